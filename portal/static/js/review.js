// Decision panel: artifact chips cycle, the viewer's marked location, u/i/o/p shortcuts, auto-advance in a queue.
const AUTO_KEY = "lightbox.review.autoAdvance";
const STATES = { "-1": ["1", "true"], "1": ["0", "false"], "0": ["-1", "mixed"] };  // undecided → present → absent →
let lastLocation = null;

function panel() { return document.getElementById("review-panel"); }

function wire() {
  const p = panel();
  if (!p) return;
  p.querySelectorAll(".chip[data-artifact]").forEach((chip) => {
    chip.addEventListener("click", () => {
      const [next, pressed] = STATES[chip.dataset.state];
      chip.dataset.state = next;
      chip.setAttribute("aria-pressed", pressed);
      p.querySelector(`input[name="artifact.${chip.dataset.artifact}"]`).value = next;
    });
  });
  const auto = p.querySelector("#auto-advance");
  if (auto) {
    auto.checked = localStorage.getItem(AUTO_KEY) === "1";
    auto.addEventListener("change", () => localStorage.setItem(AUTO_KEY, auto.checked ? "1" : "0"));
  }
  showLocation();
}

function showLocation() {
  const p = panel();
  if (!p || !lastLocation) return;
  const input = p.querySelector("#decision-location");
  if (input) input.value = JSON.stringify({ x: lastLocation.x, y: lastLocation.y, z: lastLocation.z });
  const text = p.querySelector("#location-text");
  if (text) text.textContent = `Location: (${lastLocation.x.toFixed(1)}, ${lastLocation.y.toFixed(1)}, ${lastLocation.z.toFixed(1)}) mm`;
}

document.addEventListener("lightbox:location", (e) => { lastLocation = e.detail; showLocation(); });

document.addEventListener("keydown", (e) => {
  // Typing in a text field must never trigger a shortcut (checkboxes and buttons are fine).
  if (e.target.closest("textarea, select, [contenteditable], input:not([type=checkbox]):not([type=radio]):not([type=button]):not([type=submit])")
      || e.ctrlKey || e.metaKey || e.altKey) return;
  const button = panel()?.querySelector(`button.decision[data-key="${e.key.toLowerCase()}"]:not([disabled])`);
  if (button) { e.preventDefault(); button.click(); }
});

document.body.addEventListener("htmx:afterSwap", (e) => { if (e.detail.target.id === "review-panel" || e.detail.elt.id === "review-panel") wire(); });
document.body.addEventListener("lightbox:decided", () => {
  const inQueue = new URLSearchParams(window.location.search).has("queue");
  const p = panel();
  if (inQueue && localStorage.getItem(AUTO_KEY) === "1" && p) {
    window.location = `/projects/${p.dataset.project}/queue?after=${encodeURIComponent(p.dataset.series)}`;
  }
});
wire();
