// Report forms: show a question only while its visible_if holds, and keep score sliders and boxes in step.
// The server decides too (it drops hidden answers); this only keeps the page honest while typing.
// Loaded by the forms panel, which htmx may swap in more than once: set up once, work on any form present.
(() => {
  if (window.lightboxForms) { window.lightboxForms.refreshAll(); return; }

  // The answers a form currently gives for `name`, ignoring disabled (hidden) inputs.
  function answers(form, name) {
    const out = [];
    for (const el of form.querySelectorAll("[name]")) {
      if (el.name !== name || el.disabled) continue;
      if (el.type === "radio" || el.type === "checkbox") { if (el.checked) out.push(el.value); }
      else if (el.value !== "") out.push(el.value);
    }
    return out;
  }

  function same(answer, wanted) {
    if (typeof wanted === "boolean") return (answer === "yes" && wanted) || (answer === "no" && !wanted);
    if (typeof wanted === "number") return answer.trim() !== "" && Number(answer) === wanted;
    return answer.trim().toLowerCase() === String(wanted).toLowerCase();
  }

  // Document order is enough: a condition may only refer to a question above it.
  function refresh(form) {
    for (const el of form.querySelectorAll("[data-visible-if]")) {
      const cond = JSON.parse(el.dataset.visibleIf);
      const wanted = "in" in cond ? cond.in : [cond.equals];
      const given = answers(form, cond.field);
      const show = given.some((a) => wanted.some((w) => same(a, w)));
      el.hidden = !show;
      if (el.tagName === "FIELDSET") el.disabled = !show;
    }
  }

  function refreshAll(root = document) {
    for (const form of root.querySelectorAll("[data-lb-form]")) refresh(form);
  }

  document.addEventListener("input", (e) => {
    const el = e.target;
    if (el.dataset && el.dataset.scoreFor) {  // slider → the number box that is submitted
      const box = document.getElementById(el.dataset.scoreFor);
      if (box) box.value = el.value;
      el.classList.remove("unset");
    } else if (el.type === "number" && el.closest(".lb-score")) {  // number box → slider
      const slider = el.closest(".lb-score").querySelector("[data-score-for]");
      if (slider && el.value !== "") { slider.value = el.value; slider.classList.remove("unset"); }
    }
    const form = el.closest && el.closest("[data-lb-form]");
    if (form) refresh(form);
  });
  document.addEventListener("change", (e) => {
    const form = e.target.closest && e.target.closest("[data-lb-form]");
    if (form) refresh(form);
  });
  document.addEventListener("htmx:load", () => refreshAll());
  // The builder remembers which fields are unfolded, so that a re-render leaves them as they were.
  document.addEventListener("toggle", (e) => {
    const flag = e.target.tagName === "DETAILS" && e.target.querySelector(":scope > input[data-open]");
    if (flag) flag.value = e.target.open ? "1" : "";
  }, true);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => refreshAll());
  else refreshAll();

  window.lightboxForms = { refresh, refreshAll };
})();
