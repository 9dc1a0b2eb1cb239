// Live pages: listen for server-sent "change" events and swap in the page's live regions
// ([data-live]) from a fresh server render. No framework, no build step.
(function () {
  "use strict";
  var body = document.body;
  var url = body.dataset.events;
  if (!url || !window.EventSource || !window.fetch || !window.DOMParser) return;
  var dot = document.getElementById("live");
  var busy = false, again = false, held = false;
  function drafting(el) {
    if (el.contains(document.activeElement) && document.activeElement !== document.body) {
      return true;
    }
    return Array.prototype.some.call(el.querySelectorAll("textarea, input"), function (f) {
      return f.value !== f.defaultValue;
    });
  }
  // A region held back while typing catches up once the focus leaves it.
  document.addEventListener("focusout", function () {
    if (held) { held = false; setTimeout(refresh, 50); }
  });
  function mark(cls, title) {
    if (!dot) return;
    dot.className = "live " + cls;
    if (title) dot.title = title;
  }
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, {credentials: "same-origin", headers: {"X-Live": "1"}})
      .then(function (r) {
        if (r.redirected || !r.ok) throw new Error("status " + r.status);
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var fresh = doc.querySelector('[data-live="' + el.dataset.live + '"]');
          if (!fresh || fresh.innerHTML === el.innerHTML) return;
          if (drafting(el)) { held = true; return; }  // never wipe what is being typed
          el.innerHTML = fresh.innerHTML;
        });
        if (doc.body.dataset.version) body.dataset.version = doc.body.dataset.version;
        body.dataset.updated = new Date().toISOString();
        ages();
        mark("on flash", "updated " + new Date().toLocaleTimeString());
        setTimeout(function () { mark("on"); }, 800);
      })
      .catch(function () { mark("", "live update failed; will retry"); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }
  // "last activity" ages keep counting between updates; a running researcher quiet for
  // ten minutes is marked.
  function ages() {
    document.querySelectorAll("time.ago[datetime]").forEach(function (el) {
      var s = (Date.now() - Date.parse(el.getAttribute("datetime"))) / 1000;
      if (isNaN(s)) return;
      el.textContent = s < 5 ? "just now" : s < 60 ? Math.round(s) + " s ago" :
        s < 3600 ? Math.round(s / 60) + " min ago" : s < 86400 ?
        Math.round(s / 3600) + " h ago" : Math.round(s / 86400) + " d ago";
      el.classList.toggle("stale", s > 600 && el.dataset.running === "1");
    });
  }
  setInterval(ages, 15000);
  var source = new EventSource(url + "?v=" + encodeURIComponent(body.dataset.version || ""));
  source.onopen = function () { mark("on", "live"); };
  source.onerror = function () { mark("", "reconnecting"); };
  source.addEventListener("change", function () { refresh(); });
})();
