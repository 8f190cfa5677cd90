// Decision panel: artifact chips cycle, the viewer's marked location (shown before saving, cleared after each
// decision), u/i/o/p shortcuts, undo for a few seconds, auto-advance in a queue.
const AUTO_KEY = "lightbox.review.autoAdvance";
const STATES = { "-1": ["1", "true"], "1": ["0", "false"], "0": ["-1", "mixed"] };  // undecided → present → absent →
let lastLocation = null;
let countdown = null;

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
  p.querySelector("#clear-location")?.addEventListener("click", clearLocation);
  showLocation();
  startUndoCountdown();
}

function showLocation() {
  const p = panel();
  if (!p) return;
  const input = p.querySelector("#decision-location");
  const text = p.querySelector("#location-text");
  const clear = p.querySelector("#clear-location");
  if (!lastLocation) {
    if (input) input.value = "";
    return;
  }
  if (input) input.value = JSON.stringify({ x: lastLocation.x, y: lastLocation.y, z: lastLocation.z });
  if (text) {
    text.textContent = `Location to save: (${lastLocation.x.toFixed(1)}, ${lastLocation.y.toFixed(1)}, ${lastLocation.z.toFixed(1)}) mm`;
    text.className = "location-pending";
  }
  if (clear) clear.hidden = false;
}

function clearLocation() {
  lastLocation = null;
  window.lightboxViewer?.clearMarks?.();
  const p = panel();
  if (!p) return;
  const text = p.querySelector("#location-text");
  if (text) { text.textContent = "Location: none"; text.className = "muted"; }
  const clear = p.querySelector("#clear-location");
  if (clear) clear.hidden = true;
  const input = p.querySelector("#decision-location");
  if (input) input.value = "";
}

// After a decision: "Undo" for a few seconds; with auto-advance the next series opens when the time is up.
function startUndoCountdown() {
  clearInterval(countdown);
  const bar = document.getElementById("undo-bar");
  if (!bar) return;
  let left = Number(bar.dataset.undoSeconds || 6);
  const p = panel();
  const advance = new URLSearchParams(window.location.search).has("queue") && localStorage.getItem(AUTO_KEY) === "1";
  const label = bar.querySelector(".undo-left");
  const tick = () => {
    if (label) label.textContent = advance ? `next series in ${left} s` : `${left} s`;
    if (left <= 0) {
      clearInterval(countdown);
      bar.querySelector("#undo-decision")?.remove();
      if (label) label.textContent = "";
      if (advance && p) window.location = `/projects/${p.dataset.project}/queue?after=${encodeURIComponent(p.dataset.series)}`;
    }
    left -= 1;
  };
  tick();
  countdown = setInterval(tick, 1000);
}

document.addEventListener("lightbox:location", (e) => { lastLocation = e.detail; showLocation(); });

document.addEventListener("keydown", (e) => {
  // Typing in a text field must never trigger a shortcut (checkboxes and buttons are fine); a held key decides once.
  if (e.target.closest("textarea, select, [contenteditable], input:not([type=checkbox]):not([type=radio]):not([type=button]):not([type=submit])")
      || e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
  const key = e.key.toLowerCase();
  // A panel just swapped in is wired by htmx only when it settles (~20 ms later): a key pressed before that
  // would submit the bare form natively (a GET of this page). Wiring it first is a no-op once it is wired.
  const wired = (el) => { if (window.htmx) htmx.process(el); return el; };
  if (key === "z") {
    const undo = document.getElementById("undo-decision");
    if (undo) { e.preventDefault(); wired(undo).click(); }
    return;
  }
  const button = panel()?.querySelector(`button.decision[data-key="${key}"]:not([disabled])`);
  if (button) { e.preventDefault(); wired(button.form); button.click(); }
});

document.body.addEventListener("htmx:afterSwap", (e) => { if (e.detail.target.id === "review-panel" || e.detail.elt.id === "review-panel") wire(); });
// The location belonged to the decision just made: never carry it over to the next one.
document.body.addEventListener("lightbox:decided", () => clearLocation());
document.body.addEventListener("lightbox:undone", () => clearInterval(countdown));
wire();
