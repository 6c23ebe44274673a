// Record pages: "Older" history appends the next page in place (the link still works
// without JavaScript: it opens that page).
"use strict";

document.addEventListener("click", async (event) => {
  const link = event.target.closest("#history-older");
  if (!link) return;
  event.preventDefault();
  link.setAttribute("aria-busy", "true");
  try {
    const response = await fetch(link.href, { credentials: "same-origin" });
    if (!response.ok) throw new Error(response.statusText);
    const next = new DOMParser().parseFromString(await response.text(), "text/html");
    const items = document.getElementById("history-items");
    for (const item of next.querySelectorAll("#history-items > li.item")) {
      items.appendChild(document.adoptNode(item));
    }
    const older = next.getElementById("history-older");
    if (older) {
      link.href = older.href;
      link.removeAttribute("aria-busy");
    } else {
      link.closest("nav").remove();
    }
  } catch (err) {
    showFlash("Could not load older history: " + err.message, true);
    link.removeAttribute("aria-busy");
  }
});
