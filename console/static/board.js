// Leadbot web console: the pipeline board. Drag and drop (or the card's "Move to" select),
// "More" per column, and live updates from /app/events (server-sent events).
"use strict";

(function () {
  const board = document.getElementById("board");
  if (!board) return;
  const query = board.dataset.query;
  const dialog = document.getElementById("move-dialog");
  const live = document.getElementById("board-live");

  function columnEl(code) {
    return board.querySelector('.bcol[data-column="' + CSS.escape(code) + '"]');
  }

  function cardFromHtml(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();  // rendered and escaped by the server's templates
    return t.content.firstElementChild;
  }

  // --- counts and sums ----------------------------------------------------------------------

  let totalsTimer = null;
  function refreshTotals() {
    clearTimeout(totalsTimer);
    totalsTimer = setTimeout(async function () {
      let data;
      try { data = await csrfFetch("/app/board/totals?" + query); } catch (e) { return; }
      for (const [code, col] of Object.entries(data.columns)) {
        const el = columnEl(code);
        if (!el) continue;
        el.querySelector("[data-count]").textContent = col.count;
        el.querySelector("[data-sums]").textContent = col.sums.join(" · ");
      }
    }, 250);
  }

  // --- paging -------------------------------------------------------------------------------

  async function loadColumn(col, after) {
    const params = new URLSearchParams(query);
    params.set("column", col.dataset.column);
    if (after) params.set("after", after);
    const data = await csrfFetch("/app/board/column?" + params.toString());
    const cards = col.querySelector("[data-cards]");
    if (!after) cards.replaceChildren();
    const t = document.createElement("template");
    t.innerHTML = data.html;
    for (const el of Array.from(t.content.children)) {
      const old = document.getElementById(el.id);
      if (old) old.remove();
      cards.appendChild(el);
    }
    const more = col.querySelector(".bcol-more");
    more.dataset.next = data.next || "";
    more.hidden = !data.next;
  }

  board.addEventListener("click", function (ev) {
    const more = ev.target.closest(".bcol-more");
    if (!more) return;
    more.disabled = true;
    loadColumn(more.closest(".bcol"), more.dataset.next).catch(function () {})
      .finally(function () { more.disabled = false; });
  });

  // --- moves --------------------------------------------------------------------------------

  // What a final column needs before the move: a reason, an amount, or a yes to converting.
  function askExtra(card, col) {
    const semantic = col.dataset.semantic;
    const kind = card.dataset.kind;
    if (semantic === "process") return Promise.resolve({});
    const form = dialog.querySelector("form");
    const reason = form.elements.reason;
    const amount = form.elements.amount;
    const name = col.dataset.name;
    const needsReason = semantic === "failure";
    const needsAmount = semantic === "success";
    dialog.querySelector("[data-title]").textContent = "#" + card.dataset.id + " to " + name;
    dialog.querySelector("[data-text]").textContent = needsReason
      ? "Why does it go to " + name + "?"
      : kind === "lead"
        ? "This converts the lead: its contact and a deal are made. Amount (optional):"
        : "The deal's amount:";
    dialog.querySelector('[data-for="reason"]').hidden = !needsReason;
    dialog.querySelector('[data-for="amount"]').hidden = !needsAmount;
    reason.required = needsReason;
    amount.required = needsAmount && kind === "deal";
    reason.value = "";
    amount.value = card.dataset.amount || "";
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function onClose() {
        dialog.removeEventListener("close", onClose);
        if (dialog.returnValue !== "ok") { resolve(null); return; }
        const extra = {};
        if (needsReason) extra.reason = reason.value;
        if (needsAmount && amount.value) extra.amount = amount.value;
        if (needsAmount && kind === "lead") extra.convert = true;
        resolve(extra);
      });
      dialog.returnValue = "";
      dialog.showModal();
      (needsReason ? reason : amount).focus();
    });
  }

  async function moveCard(card, col) {
    const from = card.dataset.column;
    const to = col.dataset.column;
    const select = card.querySelector("select[name=to]");
    if (from === to) return;
    const extra = await askExtra(card, col);
    if (extra === null) { if (select) select.value = from; return; }
    // Move at once; put it back where it was if the server refuses.
    const home = card.parentNode;
    const next = card.nextSibling;
    col.querySelector("[data-cards]").prepend(card);
    card.classList.add("pending");
    try {
      const data = await csrfFetch("/app/board/move", {
        method: "POST",
        body: Object.assign({ kind: card.dataset.kind, id: card.dataset.id, to: to }, extra),
      });
      const fresh = cardFromHtml(data.html);
      const current = document.getElementById(fresh.id);
      if (current) current.replaceWith(fresh);
      const target = columnEl(data.column);
      if (target && fresh.parentNode !== target.querySelector("[data-cards]")) {
        target.querySelector("[data-cards]").prepend(fresh);
      }
    } catch (err) {
      card.classList.remove("pending");
      home.insertBefore(card, next && next.parentNode === home ? next : null);
      if (select) select.value = from;
      card.classList.add("refused");
      card.setAttribute("title", err.message);
      setTimeout(function () { card.classList.remove("refused"); }, 4000);
    }
    refreshTotals();
  }

  let dragged = null;
  board.addEventListener("dragstart", function (ev) {
    const card = ev.target.closest && ev.target.closest(".bcard");
    if (!card) return;
    dragged = card;
    ev.dataTransfer.effectAllowed = "move";
    ev.dataTransfer.setData("text/plain", card.id);
    card.classList.add("dragging");
  });
  board.addEventListener("dragend", function () {
    if (dragged) dragged.classList.remove("dragging");
    dragged = null;
    board.querySelectorAll(".bcol.over").forEach(function (c) { c.classList.remove("over"); });
  });
  board.addEventListener("dragover", function (ev) {
    const col = ev.target.closest(".bcol");
    if (!col || !dragged) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = "move";
    board.querySelectorAll(".bcol.over").forEach(function (c) {
      if (c !== col) c.classList.remove("over");
    });
    col.classList.add("over");
  });
  board.addEventListener("drop", function (ev) {
    const col = ev.target.closest(".bcol");
    if (!col) return;
    ev.preventDefault();
    col.classList.remove("over");
    const card = dragged || document.getElementById(ev.dataTransfer.getData("text/plain"));
    if (card) moveCard(card, col);
  });
  // On a phone: the card's "Move to" select moves it (the button is for pages without JS).
  board.addEventListener("change", function (ev) {
    if (ev.target.name !== "to") return;
    const card = ev.target.closest(".bcard");
    const col = columnEl(ev.target.value);
    if (card && col) moveCard(card, col);
  });
  board.addEventListener("submit", function (ev) {
    if (!ev.target.classList.contains("bcard-move")) return;
    ev.preventDefault();
    const card = ev.target.closest(".bcard");
    const col = columnEl(ev.target.elements.to.value);
    if (card && col) moveCard(card, col);
  });
  board.classList.add("scripted");

  // --- live updates -------------------------------------------------------------------------

  function applyCard(data) {
    const id = "card-" + data.kind + "-" + data.id;
    const old = document.getElementById(id);
    if (data.gone) {
      if (old) old.remove();
      refreshTotals();
      return;
    }
    const col = columnEl(data.column);
    if (!col) { if (old) old.remove(); refreshTotals(); return; }
    const fresh = cardFromHtml(data.html);
    if (old && old.classList.contains("pending")) return;  // our own move answers for it
    if (old && old.dataset.column === data.column) {
      old.replaceWith(fresh);
    } else {
      if (old) old.remove();
      col.querySelector("[data-cards]").prepend(fresh);
      fresh.classList.add("arrived");
    }
    refreshTotals();
  }

  function refreshAll() {
    board.querySelectorAll(".bcol").forEach(function (col) {
      loadColumn(col, null).catch(function () {});
    });
    refreshTotals();
  }

  function connect() {
    if (!window.EventSource) return;
    const source = new EventSource("/app/events?" + query);
    source.addEventListener("open", function () {
      live.textContent = "live";
      live.classList.add("on");
    });
    source.addEventListener("error", function () {
      // The browser reconnects by itself (with Last-Event-ID); the server answers with a gap.
      live.textContent = "reconnecting…";
      live.classList.remove("on");
    });
    source.addEventListener("card", function (ev) { applyCard(JSON.parse(ev.data)); });
    source.addEventListener("gap", refreshAll);
    source.addEventListener("signedout", function () {
      source.close();
      live.textContent = "";
      showFlash("You are signed out: ask the bot for a new /web link.", true);
    });
  }
  connect();

  // --- call-backs falling due ---------------------------------------------------------------

  // Falling due writes nothing, so no change arrives for it: each card carries the earliest
  // due time of its open call-backs (data-due) and the page flips the badge itself when that
  // passes, by the server's clock (the browser's may be off). Any process, any restart.
  const skew = (Date.parse(board.dataset.now) - Date.now()) || 0;
  let dueTimer = null;

  function markOverdue(card) {
    delete card.dataset.due;
    if (card.querySelector(".badge.overdue")) return;
    let badges = card.querySelector(".bcard-badges");
    if (!badges) {
      badges = document.createElement("span");
      badges.className = "bcard-badges";
      card.querySelector(".bcard-meta").after(badges);
    }
    const badge = document.createElement("span");
    badge.className = "badge overdue";
    badge.textContent = "overdue";
    badges.appendChild(badge);
  }

  function watchDue() {
    clearTimeout(dueTimer);
    const now = Date.now() + skew;
    let next = Infinity;
    board.querySelectorAll(".bcard[data-due]").forEach(function (card) {
      const due = Date.parse(card.dataset.due);
      if (isNaN(due)) return;
      if (due <= now) markOverdue(card); else next = Math.min(next, due);
    });
    if (next === Infinity) return;
    // At most a minute: a suspended laptop's timer fires late, and long delays overflow.
    dueTimer = setTimeout(watchDue, Math.min(next - now + 50, 60000));
  }

  // Cards come and go (live updates, More, moves): look again whenever they do.
  new MutationObserver(function () {
    clearTimeout(dueTimer);
    dueTimer = setTimeout(watchDue, 0);
  }).observe(board, { childList: true, subtree: true });
  watchDue();
})();
