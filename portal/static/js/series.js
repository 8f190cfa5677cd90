// Series page: mount the viewer on this series' instances, prefetch the next series, and the keyboard.
import { mount } from "/static/viewer/dist/viewer.js";

const el = document.getElementById("viewer");
const instances = JSON.parse(el?.dataset.instances || "[]");
let viewer = null;

if (el && instances.length) {
  el.classList.add("mounted");
  // The preview stays until the viewer has painted real pixels.
  el.addEventListener("lightbox:rendered", () => document.getElementById("still")?.remove(), { once: true });
  viewer = mount(el, {
    instances,
    overlay: { patient: el.dataset.patient, series: el.dataset.series },
    prefetch: { instances: JSON.parse(el.dataset.prefetch || "[]") },
    // Open on the image the preview showed (the middle instance's first frame).
    startIndex: instances.slice(0, Number(el.dataset.start || 0)).reduce((n, i) => n + (i.frames || 1), 0),
    // The review panel (when present) listens for this to store the location with a decision.
    onLocation: (loc) => document.dispatchEvent(new CustomEvent("lightbox:location", { detail: loc })),
  });
  window.lightboxViewer = viewer;
}

// The AI panel's "Show heatmap on image": go to the frame the model scored worst and overlay the
// heatmap there (the panel is swapped in by htmx, so listen on the document).
function imageIndexOf(sop, frame) {
  let index = 0;
  for (const inst of instances) {
    if (inst.url.includes(`/instances/${sop}/file`)) return index + frame;
    index += inst.frames || 1;
  }
  return null;
}

document.addEventListener("click", async (e) => {
  const button = e.target.closest("#heatmap-toggle");
  if (!button || !viewer) return;
  const on = button.getAttribute("aria-pressed") !== "true";
  if (on) {
    const index = imageIndexOf(button.dataset.sop, Number(button.dataset.frame || 0));
    if (index === null) return;
    viewer.goTo(index);
    await viewer.setHeatmap(button.dataset.url, { imageIndex: index });
  } else {
    await viewer.setHeatmap(null);
  }
  button.setAttribute("aria-pressed", String(on));
  button.textContent = on ? "Hide heatmap" : "Show heatmap on image";
});

// A re-run replaces the panel (and its button): drop an overlay the new panel does not know of.
document.addEventListener("htmx:afterSwap", (e) => {
  if (e.target.id === "ai-panel" || e.detail?.elt?.id === "ai-panel") viewer?.setHeatmap(null);
});

const dialog = document.getElementById("shortcuts");
const toggleHelp = () => (dialog.open ? dialog.close() : dialog.showModal());
document.getElementById("show-shortcuts")?.addEventListener("click", toggleHelp);
document.getElementById("close-shortcuts")?.addEventListener("click", () => dialog.close());

// Full screen: the viewer pane alone (Esc or f again leaves it).
function toggleFullScreen() {
  const pane = document.getElementById("viewer-pane");
  if (document.fullscreenElement) document.exitFullscreen();
  else pane?.requestFullscreen?.();
}

// Tag browser: the header of the image on screen.
const tagDialog = document.getElementById("tag-browser");
function currentSop() {
  let index = viewer?.getState().index ?? Number(el?.dataset.start || 0);
  for (const inst of instances) {
    const frames = inst.frames || 1;
    if (index < frames) return inst.url.match(/\/instances\/([^/]+)\/file/)[1];
    index -= frames;
  }
  return null;
}
async function toggleTags() {
  if (!tagDialog) return;
  if (tagDialog.open) { tagDialog.close(); return; }
  const sop = currentSop();
  if (!sop) return;
  const project = document.getElementById("review-panel")?.dataset.project || window.location.pathname.split("/")[2];
  document.getElementById("tag-sop").textContent = sop;
  tagDialog.showModal();
  const r = await fetch(`/projects/${project}/instances/${sop}/tags`, { headers: { "HX-Request": "true" } });
  document.getElementById("tag-body").innerHTML = await r.text();
  filterTags();
}
function filterTags() {
  const q = (document.getElementById("tag-filter")?.value || "").toLowerCase();
  document.querySelectorAll("#tag-body tbody tr").forEach((tr) => { tr.hidden = q && !tr.textContent.toLowerCase().includes(q); });
}
document.getElementById("tag-filter")?.addEventListener("input", filterTags);
document.getElementById("close-tags")?.addEventListener("click", () => tagDialog.close());

function go(id) {
  const link = document.getElementById(id);
  if (link) window.location = link.href;
}

document.addEventListener("keydown", (e) => {
  // Typing in a text field must never trigger a shortcut (checkboxes and buttons are fine).
  if (e.target.closest("textarea, select, [contenteditable], input:not([type=checkbox]):not([type=radio]):not([type=button]):not([type=submit])")
      || e.ctrlKey || e.metaKey || e.altKey) return;
  const actions = {
    ArrowUp: () => go("prev-series"),
    ArrowDown: () => go("next-series"),
    ArrowLeft: () => viewer?.prev(),
    ArrowRight: () => viewer?.next(),
    " ": () => viewer?.toggleCine(),
    a: () => viewer?.autoWindow(),
    n: () => viewer?.invert(),
    r: () => viewer?.reset(),
    m: () => viewer?.setTool("mark"),
    l: () => viewer?.setTool("length"),
    f: toggleFullScreen,
    t: toggleTags,
    "?": toggleHelp,
  };
  const action = actions[e.key];
  if (action) {
    e.preventDefault();
    action();
  }
});
