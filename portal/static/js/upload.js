// "Upload scans": collect dropped/picked files (folders walked), send them in batches with progress,
// and append the server's result rows. Batches keep each request bounded and the progress honest.
(function () {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const url = form.dataset.url;
  const zone = document.getElementById("dropzone");
  const bar = document.getElementById("upload-progress");
  const summary = document.getElementById("upload-summary");
  const table = document.getElementById("upload-results");
  const csrf = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["x-csrftoken"];
  const BATCH_FILES = 25, BATCH_BYTES = 64 * 1024 * 1024;
  let queue = [], running = false, totalBytes = 0, doneBytes = 0, counts = {};

  function walk(entry, prefix) {
    return new Promise((resolve) => {
      if (entry.isFile) {
        entry.file((f) => resolve([{ file: f, name: prefix + f.name }]), () => resolve([]));
      } else if (entry.isDirectory) {
        const reader = entry.createReader(), all = [];
        const read = () => reader.readEntries(async (entries) => {
          if (!entries.length) {
            const nested = await Promise.all(all.map((e) => walk(e, prefix + entry.name + "/")));
            resolve(nested.flat());
          } else { all.push(...entries); read(); }
        }, () => resolve([]));
        read();
      } else resolve([]);
    });
  }

  function add(items) {
    items = items.filter((i) => i.file.size >= 0);
    if (!items.length) return;
    queue.push(...items);
    totalBytes += items.reduce((n, i) => n + i.file.size, 0);
    document.getElementById("upload-status").hidden = false;
    table.hidden = false;
    if (!running) next();
  }

  function show() {
    bar.value = totalBytes ? Math.round((100 * doneBytes) / totalBytes) : 100;
    const parts = ["stored", "already_stored", "conflict", "rejected"].filter((k) => counts[k])
      .map((k) => `${counts[k]} ${k.replace("_", " ")}`);
    summary.textContent = (queue.length || running ? "Uploading… " : "Done. ") + parts.join(", ");
  }

  // Problems first (rejected, conflict), then already stored, then stored; by file name within each (numbers as
  // numbers), so the list reads the same however the batches and zip members came back.
  const RANK = { rejected: 0, conflict: 1, already_stored: 2, stored: 3 };
  const byName = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
  function order(tbody) {
    const rows = [...tbody.rows];
    rows.sort((a, b) => ((RANK[a.dataset.status] ?? 0) - (RANK[b.dataset.status] ?? 0))
      || byName.compare(a.cells[0].textContent, b.cells[0].textContent));
    tbody.append(...rows);
  }

  function next() {
    if (!queue.length) { running = false; show(); return; }
    running = true;
    const batch = [];
    let bytes = 0;
    while (queue.length && batch.length < BATCH_FILES && (bytes < BATCH_BYTES || !batch.length)) {
      const item = queue.shift(); batch.push(item); bytes += item.file.size;
    }
    const data = new FormData();
    data.append("archive", document.getElementById("archive").value);
    batch.forEach((i) => data.append("file", i.file, i.name));
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("x-csrftoken", csrf);
    xhr.upload.onprogress = (e) => { bar.value = Math.round((100 * (doneBytes + e.loaded * bytes / (e.total || 1))) / (totalBytes || 1)); };
    xhr.onload = () => {
      doneBytes += bytes;
      const tbody = table.querySelector("tbody");
      if (xhr.status === 200) {
        tbody.insertAdjacentHTML("beforeend", xhr.responseText);
      } else {
        let reason = xhr.statusText;
        try { reason = JSON.parse(xhr.responseText).detail || reason; } catch (e) { /* HTML error page */ }
        batch.forEach((i) => {
          const tr = document.createElement("tr"); tr.dataset.status = "rejected";
          tr.innerHTML = "<td></td><td><span class='badge bad'>rejected</span> </td><td></td><td></td>";
          tr.cells[0].textContent = i.name; tr.cells[1].append(`HTTP ${xhr.status}: ${reason}`);
          tbody.append(tr);
        });
      }
      order(tbody);
      counts = {};
      tbody.querySelectorAll("tr").forEach((tr) => { counts[tr.dataset.status] = (counts[tr.dataset.status] || 0) + 1; });
      show(); next();
    };
    xhr.onerror = () => { summary.textContent = "The connection failed; the remaining files were not sent."; running = false; };
    xhr.send(data);
    show();
  }

  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (e) => {
    e.preventDefault(); zone.classList.remove("over");
    const entries = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
    if (entries.length) add((await Promise.all(entries.map((en) => walk(en, "")))).flat());
    else add([...e.dataTransfer.files].map((f) => ({ file: f, name: f.name })));
  });
  document.getElementById("pick-files").addEventListener("change", (e) => {
    add([...e.target.files].map((f) => ({ file: f, name: f.name }))); e.target.value = "";
  });
  document.getElementById("pick-folder").addEventListener("change", (e) => {
    add([...e.target.files].map((f) => ({ file: f, name: f.webkitRelativePath || f.name }))); e.target.value = "";
  });
  // Files chosen before this script ran (a quick pick on a slow page load) are sent too, not silently dropped.
  for (const id of ["pick-files", "pick-folder"]) {
    const input = document.getElementById(id);
    if (input.files && input.files.length) input.dispatchEvent(new Event("change"));
  }
})();
