// Leadbot web console: shared helpers for the pages' own small scripts.
"use strict";

// The session's CSRF token, put into every page by base.html.
function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

// Show a one-line message at the top of the page (refusals, confirmations).
function showFlash(text, isError) {
  const box = document.getElementById("flashes");
  if (!box) return;
  box.appendChild(el("p", isError ? "flash error" : "flash", text));
}

// A new element with an optional class and text (text, never HTML: what the server says is
// shown as is).
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// fetch() with the CSRF header and JSON both ways. Resolves to the parsed JSON answer;
// a refusal (4xx / 5xx) is shown on the page and rejects with an Error carrying the reason.
async function csrfFetch(url, options) {
  const opts = Object.assign({ method: "GET", credentials: "same-origin" }, options || {});
  const headers = new Headers(opts.headers || {});
  headers.set("X-CSRF-Token", csrfToken());
  headers.set("Accept", "application/json");
  if (opts.body !== undefined && typeof opts.body !== "string" && !(opts.body instanceof FormData)) {
    headers.set("Content-Type", "application/json");
    opts.body = JSON.stringify(opts.body);
  }
  opts.headers = headers;
  const response = await fetch(url, opts);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const reason = (data && (data.detail || data.error)) || response.statusText;
    if (response.status === 401) {
      showFlash("You are signed out: ask the bot for a new /web link.", true);
    } else {
      showFlash(reason, true);
    }
    const err = new Error(reason);
    err.status = response.status;
    err.data = data;
    throw err;
  }
  return data;
}
