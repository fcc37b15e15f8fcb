// CaseMesh web app: the only script. Two jobs no server-rendered page can do:
// 1. live: a page showing cases follows the node's change feed (server-sent events)
//    and shows a change that arrived by sync within seconds, marking what changed;
// 2. drafts: a half-filled form survives a session that ran out (kept in this
//    tab's sessionStorage until the server confirms the save).
(function () {
  "use strict";
  var body = document.body;

  // ---- drafts ----
  var drafts = document.querySelectorAll("form[data-draft]");
  var done = body.getAttribute("data-done") || "";
  function keyOf(form) { return "casemesh-draft:" + form.getAttribute("data-draft"); }
  function save(form) {
    var values = [];
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.type === "hidden" || el.type === "submit") return;
      if (el.type === "checkbox" || el.type === "radio") values.push([el.name, el.value, el.checked]);
      else values.push([el.name, el.value]);
    });
    try { sessionStorage.setItem(keyOf(form), JSON.stringify(values)); } catch (e) { /* storage full or off */ }
  }
  function restore(form) {
    var text = null;
    try { text = sessionStorage.getItem(keyOf(form)); } catch (e) { return false; }
    if (!text) return false;
    var values;
    try { values = JSON.parse(text); } catch (e) { return false; }
    var restored = false;
    values.forEach(function (item) {
      Array.prototype.forEach.call(form.elements, function (el) {
        if (el.name !== item[0]) return;
        if (el.type === "checkbox" || el.type === "radio") {
          if (el.value === item[1] && el.checked !== item[2]) { el.checked = item[2]; restored = true; }
        } else if (el.value !== item[1] && item[1] !== "") { el.value = item[1]; restored = true; }
      });
    });
    return restored;
  }
  var anyRestored = false;
  Array.prototype.forEach.call(drafts, function (form) {
    var key = form.getAttribute("data-draft");
    // The server confirmed this form's save: its draft is done with.
    if (done && done === key) { try { sessionStorage.removeItem(keyOf(form)); } catch (e) {} }
    else if (restore(form)) {
      anyRestored = true;
      var details = form.closest("details");
      if (details) details.open = true;
    }
    form.addEventListener("input", function () { save(form); });
    form.addEventListener("change", function () { save(form); });
  });
  if (anyRestored) {
    var note = document.getElementById("live");
    note.textContent = body.getAttribute("data-draft-restored");
    note.hidden = false;
  }

  // ---- sharing: the summary follows the categories ticked ----
  var share = document.getElementById("share-form");
  if (share) {
    var follow = function () {
      share.querySelectorAll("li[data-category]").forEach(function (item) {
        var box = share.querySelector('input[name="categories"][value="' + item.getAttribute("data-category") + '"]');
        item.hidden = !(box && box.checked);
      });
      share.querySelectorAll("li[data-category-off]").forEach(function (item) {
        var box = share.querySelector('input[name="categories"][value="' + item.getAttribute("data-category-off") + '"]');
        item.hidden = !!(box && box.checked);
      });
    };
    share.addEventListener("change", follow);
    follow();
  }

  // ---- live ----
  var cursor = body.getAttribute("data-cursor");
  var page = body.getAttribute("data-page");
  var caseID = body.getAttribute("data-case");
  if (!cursor || !window.EventSource || (page !== "case" && page !== "cases" && page !== "conflicts")) return;
  function typing() {
    var active = document.activeElement;
    if (active && (active.tagName === "TEXTAREA" || active.tagName === "INPUT" || active.tagName === "SELECT")) return true;
    return Array.prototype.some.call(drafts, function (form) {
      try { return !!sessionStorage.getItem(keyOf(form)); } catch (e) { return false; }
    });
  }
  function mark(changes) {
    changes.forEach(function (change) {
      if (page === "case") {
        change.fields.forEach(function (field) {
          document.querySelectorAll('[data-field="' + CSS.escape(field) + '"]').forEach(function (el) {
            el.classList.add("changed");
          });
        });
        var first = document.querySelector('.entries li');
        if (first && change.fields.some(function (f) { return /(notes|stageEvents|decisions|deliveries)$/.test(f); })) first.classList.add("changed");
      } else {
        document.querySelectorAll('[data-case="' + CSS.escape(change.case) + '"]').forEach(function (el) {
          el.classList.add("changed");
        });
      }
    });
  }
  function refresh(changes) {
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.redirected || !response.ok) { window.location.reload(); return null; }
        return response.text();
      })
      .then(function (html) {
        if (html === null) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        var main = document.getElementById("main");
        if (!fresh || !main) return;
        main.innerHTML = fresh.innerHTML;
        body.setAttribute("data-live-updated", String(Date.now()));
        mark(changes);
      })
      .catch(function () { /* the node went away; the stream reconnects */ });
  }
  var pending = [];
  function offer(changes) {
    if (!typing()) { refresh(changes); return; }
    pending = pending.concat(changes);
    var banner = document.getElementById("live");
    banner.textContent = body.getAttribute("data-live-changed") + " ";
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = body.getAttribute("data-live-reload");
    button.addEventListener("click", function () { banner.hidden = true; refresh(pending); pending = []; });
    banner.appendChild(button);
    banner.hidden = false;
  }
  var source = new EventSource("/api/v1/changes?since=" + encodeURIComponent(cursor), { withCredentials: true });
  source.addEventListener("changes", function (event) {
    var data;
    try { data = JSON.parse(event.data); } catch (e) { return; }
    var relevant = data.changes.filter(function (change) {
      // Reads are recorded as changes to access logs: never a reason to refresh
      // (a refresh is itself a read).
      if (change.fields.every(function (f) { return f === "accessLog"; })) return false;
      if (page === "case") return change.case === caseID;
      return true;
    });
    if (relevant.length > 0) offer(relevant);
  });
})();
