// Leadbot web console: the /app/new/* forms (console/create.py). Everything here is a help on
// top of plain forms that work without it: the duplicate check as a phone or email field is
// left, pickers that search as one types, and new-contact rows added and removed in place.
"use strict";

(function () {
  const form = document.querySelector("form.create");
  if (!form) return;

  // --- the duplicate check ------------------------------------------------------------------

  const attachable = { contact: ["lead", "contact", "company"], lead: ["lead", "contact", "company"],
    company: ["company"] }[form.dataset.create] || [];

  function attachButton(hit) {
    const button = el("button", "attach", "attach instead?");
    button.type = "submit";
    button.name = "action";
    button.value = "attach:" + hit.owner_type + ":" + hit.owner_id;
    return button;
  }

  async function check(input) {
    const box = input.parentElement.querySelector(".check-hits");
    if (!box) return;
    box.replaceChildren();
    const value = input.value.trim();
    if (!value) return;
    const params = new URLSearchParams();
    params.set(input.dataset.check, value);
    let answer;
    try {
      answer = await csrfFetch("/app/new/check?" + params.toString());
    } catch (e) {
      return;  // csrfFetch showed the reason
    }
    for (const hit of answer.hits) {
      const line = el("span", "check-hit");
      if (hit.url) {
        const link = el("a", "", "this " + hit.kind + " belongs to " + hit.owner_type + " #" + hit.owner_id);
        link.href = hit.url;
        link.target = "_blank";
        line.append(link);
        line.title = hit.message;
      } else {
        line.append(hit.message);
      }
      // Only the form's own comms can be attached; a company's new contact rows cannot.
      const ownField = !input.name.startsWith("row_");
      if (ownField && !hit.hidden && attachable.includes(hit.owner_type)) {
        line.append(" — ", attachButton(hit));
      }
      box.append(line);
    }
  }

  form.addEventListener("change", (event) => {
    const input = event.target;
    if (input instanceof HTMLInputElement && input.dataset.check) check(input);
  });

  // --- pickers ------------------------------------------------------------------------------

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
  }

  function setUpPicker(box) {
    const name = box.dataset.picker;
    const search = box.querySelector('input[type="search"]');
    const hidden = box.querySelector('input[type="hidden"]');
    const results = box.querySelector(".pick-results");
    const find = box.querySelector("button.find");
    if (find) find.hidden = true;  // the script searches as one types
    const members = name === "member" ? form.querySelector(".member-list") : null;

    function choose(item) {
      results.replaceChildren();
      if (members) {
        if (!members.querySelector('input[value="' + item.id + '"]')) {
          const li = el("li");
          const label = el("label");
          const tick = el("input");
          tick.type = "checkbox";
          tick.name = "member_id";
          tick.value = String(item.id);
          tick.checked = true;
          label.append(tick, " " + item.label);
          li.append(label);
          members.append(li);
        }
        search.value = "";
      } else {
        hidden.value = String(item.id);
        search.value = item.label;
      }
    }

    const lookUp = debounce(async () => {
      const q = search.value.trim();
      results.replaceChildren();
      if (q.length < 2) return;
      const kind = name === "company" ? "company" : "contact";
      let answer;
      try {
        answer = await csrfFetch("/app/new/find?" + new URLSearchParams({ kind: kind, q: q }));
      } catch (e) {
        return;
      }
      if (search.value.trim() !== q) return;  // typed on meanwhile
      if (!answer.results.length) {
        results.append(el("li", "none", "nothing found"));
      }
      for (const item of answer.results) {
        const li = el("li");
        const button = el("button", "pick", item.label);
        button.type = "button";
        button.addEventListener("click", () => choose(item));
        li.append(button);
        results.append(li);
      }
    }, 200);

    search.addEventListener("input", () => {
      if (hidden) hidden.value = "";  // typed again: nothing chosen until picked
      lookUp();
    });
    // Enter in a picker picks the only result instead of sending the form.
    search.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      const only = results.querySelectorAll("button.pick");
      if (only.length === 1) { event.preventDefault(); only[0].click(); }
    });
  }

  form.querySelectorAll("[data-picker]").forEach(setUpPicker);

  // --- new-contact rows of a company --------------------------------------------------------

  const rows = form.querySelector(".contact-rows");
  const template = document.getElementById("contact-row");
  if (rows && template) {
    const add = form.querySelector("button.add-row");
    function wire(row) {
      const remove = row.querySelector(".remove-row");
      remove.hidden = false;
      remove.addEventListener("click", () => row.remove());
    }
    rows.querySelectorAll(".contact-row").forEach(wire);
    add.type = "button";  // the script adds rows in place; without it the server does
    add.addEventListener("click", () => {
      const row = template.content.firstElementChild.cloneNode(true);
      row.querySelectorAll("input").forEach((input) => { input.value = ""; });
      rows.append(row);
      wire(row);
      row.querySelector("input").focus();
    });
  }
})();
