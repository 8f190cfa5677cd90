// Series page: mount the viewer on this series' instances, prefetch the next series, and the keyboard.
import { mount } from "/static/viewer/dist/viewer.js";

const el = document.getElementById("viewer");
const instances = JSON.parse(el?.dataset.instances || "[]");
let viewer = null;

if (el && instances.length) {
  el.classList.add("mounted");
  viewer = mount(el, {
    instances,
    overlay: { patient: el.dataset.patient, series: el.dataset.series },
    prefetch: { instances: JSON.parse(el.dataset.prefetch || "[]") },
    // The review panel (when present) listens for this to store the location with a decision.
    onLocation: (loc) => document.dispatchEvent(new CustomEvent("lightbox:location", { detail: loc })),
  });
  window.lightboxViewer = viewer;
}

const dialog = document.getElementById("shortcuts");
const toggleHelp = () => (dialog.open ? dialog.close() : dialog.showModal());
document.getElementById("show-shortcuts")?.addEventListener("click", toggleHelp);
document.getElementById("close-shortcuts")?.addEventListener("click", () => dialog.close());

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
    "?": toggleHelp,
  };
  const action = actions[e.key];
  if (action) {
    e.preventDefault();
    action();
  }
});
