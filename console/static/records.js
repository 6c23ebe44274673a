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

// Edit: the phones and emails being added are checked as one types (/app/new/check, the
// create forms' endpoint, told which record this is: its own values are no hit). Known ones
// show with links to their records and a "Save anyway"; without the script the save itself
// is refused with the same warning (console/records.py).
(function () {
  const form = document.querySelector("form.edit[data-record]");
  if (!form) return;
  const box = form.querySelector(".edit-dups");
  const inputs = form.querySelectorAll("input[data-check]");
  let asked = 0;

  // "+49301234567 is already on contact #12 Anna Meyer — lead #40", as the server words it;
  // a record the rep may not open comes without a link ("a lead of another rep (Otto)").
  function warning(hits) {
    const byValue = new Map();
    for (const hit of hits) {
      if (!byValue.has(hit.value)) byValue.set(hit.value, []);
      byValue.get(hit.value).push(hit);
    }
    const list = el("ul");
    for (const [value, held] of byValue) {
      const li = el("li");
      const listed = held.find((hit) => !hit.holder);
      if (listed) {
        li.append(listed.message);
      } else {
        li.append(value + " is already on ");
        held.forEach((hit, i) => {
          let holder = hit.holder;
          if (hit.url) {
            holder = el("a", "", hit.holder);
            holder.href = hit.url;
          }
          li.append(i ? " — " : "", holder);
        });
      }
      list.append(li);
    }
    const force = el("button", "secondary", "Save anyway");
    force.type = "submit";
    force.name = "force";
    force.value = "1";
    const section = el("section", "dup-warning");
    section.setAttribute("role", "alert");
    section.append(el("h2", "", "Already known"), list, force);
    return section;
  }

  async function check() {
    const mine = ++asked;
    const params = new URLSearchParams({ record: form.dataset.record });
    let typed = false;
    for (const input of inputs) {
      const value = input.value.trim();
      if (value) { params.set(input.dataset.check, value); typed = true; }
    }
    if (!typed) { box.replaceChildren(); return; }
    let answer;
    try {
      answer = await csrfFetch("/app/new/check?" + params.toString());
    } catch (e) {
      return;  // csrfFetch showed the reason
    }
    if (mine !== asked) return;  // typed on meanwhile
    box.replaceChildren(...(answer.hits.length ? [warning(answer.hits)] : []));
  }

  let timer = null;
  form.addEventListener("input", (event) => {
    if (!(event.target instanceof HTMLInputElement) || !event.target.dataset.check) return;
    clearTimeout(timer);
    timer = setTimeout(check, 300);
  });
})();
