// Small behaviours of every page, as listeners rather than inline handlers (the Content-Security-Policy forbids
// inline script): the project switcher, selects that submit their form, forms the page's own script sends.
document.addEventListener("change", (event) => {
  const el = event.target;
  if (el.matches("select.project-switcher") && el.value) {
    window.location = "/projects/" + encodeURIComponent(el.value);
  } else if (el.matches("select[data-submit-on-change]") && el.form) {
    el.form.requestSubmit();
  }
});
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.matches("form[data-script-only]")) event.preventDefault();
  // A destructive form asks first (data-confirm holds the question).
  else if (form.matches("form[data-confirm]") && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

// "Copy link" beside a study or series (studies/_housekeeping.html): the page's absolute address.
function fillShareLinks() {
  for (const input of document.querySelectorAll("input#share-link[data-path]")) {
    input.value = window.location.origin + input.dataset.path;
  }
}
document.addEventListener("DOMContentLoaded", fillShareLinks);
document.addEventListener("htmx:afterSwap", fillShareLinks);
document.addEventListener("click", async (event) => {
  const button = event.target.closest("#copy-link");
  if (!button) return;
  const input = document.getElementById("share-link");
  input.select();
  try { await navigator.clipboard.writeText(input.value); } catch { document.execCommand("copy"); }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy link"; }, 1500);
});

// Project settings (projects/settings.html): one section at a time, the one the address names (#dicom after saving
// DICOM settings); a section holding an error shows first; the tabs are plain links, so back and bookmarks work.
function settingsTabs() {
  const nav = document.querySelector("nav.settings-tabs");
  if (!nav) return;
  const links = [...nav.querySelectorAll("a[href^='#']")];
  const ids = links.map((a) => a.getAttribute("href").slice(1));
  let id = window.location.hash.slice(1);
  if (!ids.includes(id)) {
    const failed = ids.find((i) => document.getElementById(i)?.querySelector(".flash-error"));
    id = failed || ids[0];
  }
  for (const i of ids) {
    const section = document.getElementById(i);
    if (section) section.hidden = i !== id;
  }
  for (const a of links) {
    if (a.getAttribute("href") === "#" + id) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}
document.addEventListener("DOMContentLoaded", settingsTabs);
window.addEventListener("hashchange", settingsTabs);
document.addEventListener("htmx:afterSwap", settingsTabs);
