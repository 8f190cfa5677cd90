// Reading desk: every side panel with a header folds (state remembered per panel), also after htmx swaps it in.
const FOLD_KEY = "lightbox.desk.folded";

function foldedSet() {
  try { return new Set(JSON.parse(localStorage.getItem(FOLD_KEY) || "[]")); } catch { return new Set(); }
}

function panelKey(article) {
  return article.id || article.querySelector(":scope > header h3")?.textContent.trim().replace(/\s+/g, " ") || "";
}

function setFolded(article, folded) {
  article.classList.toggle("folded", folded);
  const button = article.querySelector(":scope > header > button.fold");
  if (button) {
    button.setAttribute("aria-expanded", String(!folded));
    button.textContent = folded ? "▸" : "▾";
    button.title = folded ? "Show this panel" : "Fold this panel";
  }
}

function wireFolds(root) {
  const folded = foldedSet();
  root.querySelectorAll(".side-pane article").forEach((article) => {
    const header = article.querySelector(":scope > header");
    if (!header || header.querySelector(":scope > button.fold")) return;
    const key = panelKey(article);
    const button = document.createElement("button");
    button.type = "button";
    button.className = "fold";
    button.dataset.panel = key;
    header.appendChild(button);
    button.addEventListener("click", () => {
      const now = foldedSet();
      const fold = !article.classList.contains("folded");
      if (fold) now.add(key); else now.delete(key);
      localStorage.setItem(FOLD_KEY, JSON.stringify([...now]));
      setFolded(article, fold);
    });
    setFolded(article, folded.has(key));
  });
}

// The viewer and the panels fill the window below the header: measure where they start (the header's height
// depends on the fonts and the width).
function fitToWindow() {
  const layout = document.querySelector(".series-layout");
  const main = document.querySelector("main.desk");
  if (!layout || !main) return;
  main.style.setProperty("--desk-top", `${Math.round(layout.getBoundingClientRect().top + window.scrollY)}px`);
}
window.addEventListener("resize", fitToWindow);
fitToWindow();

document.addEventListener("htmx:load", () => wireFolds(document));
wireFolds(document);

// Leaving the page lets my claim on the series go at once (otherwise it would lapse after a couple of minutes).
window.addEventListener("pagehide", () => {
  const bar = document.querySelector("#claim-bar[data-mine]");
  if (!bar) return;
  let headers = {};
  try { headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}"); } catch { /* no token: lapse */ }
  fetch(bar.dataset.release, { method: "POST", keepalive: true, credentials: "same-origin", headers });
});
