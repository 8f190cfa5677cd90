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
  if (event.target.matches("form[data-script-only]")) event.preventDefault();
});
