// The dashboard's only script: auto-refresh and confirmations. Pages work
// without it. It never builds markup from data: a refresh swaps in the
// server-rendered (escaped) <main> of the same page.
"use strict";

(function () {
  const main = document.getElementById("main");
  const period = Number(main && main.dataset.refreshMs);
  const toggle = document.getElementById("refresh-toggle");
  const box = document.getElementById("refresh-box");
  const key = "queued.dashboard.refresh";

  if (period > 0 && toggle && box) {
    toggle.hidden = false;
    box.checked = localStorage.getItem(key) !== "off";
    box.addEventListener("change", () => localStorage.setItem(key, box.checked ? "on" : "off"));
    let busy = false;
    let finished = false;
    setInterval(async () => {
      if (!box.checked || busy || finished || document.hidden) return;
      // Do not pull the page from under an operator about to click.
      if (document.activeElement && document.activeElement.closest("form")) return;
      busy = true;
      try {
        const resp = await fetch(location.href, { headers: { "Accept": "text/html" }, cache: "no-store" });
        if (!resp.ok) return;
        const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
        const fresh = doc.getElementById("main");
        if (fresh) {
          main.replaceChildren(...fresh.childNodes);
          if (!fresh.dataset.refreshMs) finished = true; // e.g. the job finished
        }
      } catch (e) {
        // The server is away; try again at the next tick.
      } finally {
        busy = false;
      }
    }, period);
  }

  // Confirm destructive actions; delegated, so it survives refreshes.
  document.addEventListener("submit", (ev) => {
    const msg = ev.target.dataset && ev.target.dataset.confirm;
    if (msg && !window.confirm(msg)) ev.preventDefault();
  });
})();
