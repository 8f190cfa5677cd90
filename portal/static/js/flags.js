// Flag for discussion: attach the viewer's screenshot (a PNG data URL) to the form, then let htmx send it.
document.addEventListener("click", async (e) => {
  const button = e.target.closest("#flag-send");
  if (!button) return;
  const form = button.form;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  const field = form.querySelector("[name=screenshot]");
  field.value = "";
  const viewer = window.lightboxViewer;
  if (viewer && form.querySelector("[name=attach_screenshot]")?.checked) {
    try {
      // A viewer that cannot render (no WebGL) must not block the flag: give up after a few seconds.
      const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), 5000));
      field.value = await Promise.race([viewer.screenshot("dataURL"), timeout]);
    } catch (err) {
      console.warn("flag: no screenshot", err);
    }
  }
  htmx.trigger(form, "lightbox:flag-send");
});
