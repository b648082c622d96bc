// featurepipe catalog: live search, copy buttons and the lookup console.
// Plain JavaScript, no framework; every page works without it except the
// console's live answer.
"use strict";
(function () {
  // Live search: fetch the results fragment as the user types; keep the
  // address a deep link of the search.
  var form = document.getElementById("search-form");
  if (form) {
    var results = document.getElementById("results"), timer = null, seq = 0;
    var run = function () {
      var params = new URLSearchParams(new FormData(form));
      Array.from(params.keys()).forEach(function (k) { if (!params.get(k)) params.delete(k); });
      var qs = params.toString(), mine = ++seq;
      history.replaceState(null, "", "/ui/" + (qs ? "?" + qs : ""));
      params.set("partial", "1");
      fetch("/ui/?" + params.toString(), { credentials: "same-origin" })
        .then(function (r) { if (!r.ok) throw new Error("search failed: " + r.status); return r.text(); })
        .then(function (html) { if (mine === seq) { results.innerHTML = html; results.dataset.query = qs; } })
        .catch(function (e) { results.innerHTML = ""; var p = document.createElement("p"); p.className = "problem"; p.textContent = e.message; results.appendChild(p); });
    };
    form.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(run, 150); });
    form.addEventListener("submit", function (ev) { ev.preventDefault(); clearTimeout(timer); run(); });
  }

  // Copy buttons.
  document.querySelectorAll("button[data-copy]").forEach(function (b) {
    b.addEventListener("click", function () {
      var text = document.getElementById(b.dataset.copy).textContent;
      var done = function () { var t = b.textContent; b.textContent = "Copied"; setTimeout(function () { b.textContent = t; }, 1200); };
      if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, function () {});
      else { var r = document.createRange(); r.selectNodeContents(document.getElementById(b.dataset.copy)); var s = getSelection(); s.removeAllRanges(); s.addRange(r); }
    });
  });

  // Lookup console.
  var cform = document.getElementById("console");
  if (!cform) return;
  var entity = document.getElementById("c-entity"), service = document.getElementById("c-service");
  var keys = document.getElementById("c-keys"), status = document.getElementById("c-status");
  var answer = document.getElementById("c-answer"), raw = document.getElementById("c-raw"), reqOut = document.getElementById("c-request");
  var preset = JSON.parse(document.getElementById("c-preset").textContent || "null") || [];
  // A value as text: null; a string (last, first of a string field) or a
  // list (first_k, last_k) as its JSON, so that "" and a comma inside a
  // string stay visible; a number or boolean as it is.
  function shown(x) {
    if (x === null || x === undefined) return "null";
    if (typeof x === "string" || typeof x === "object") return JSON.stringify(x); // strings, lists, top_k lists and bucketed maps
    return String(x);
  }
  cform.querySelectorAll("input[name=feature]").forEach(function (c) { if (preset.indexOf(c.value) >= 0) c.checked = true; });
  var showEntity = function () {
    cform.querySelectorAll(".feats").forEach(function (d) {
      var on = d.dataset.entity === entity.value; d.hidden = !on;
      d.querySelectorAll("input").forEach(function (c) { c.disabled = !on || service.value !== ""; });
    });
  };
  entity.addEventListener("change", showEntity);
  service.addEventListener("change", function () {
    var o = service.selectedOptions[0];
    if (o && o.dataset.entity) entity.value = o.dataset.entity;
    showEntity();
  });
  showEntity();
  var cell = function (tr, text, cls) { var td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.appendChild(td); return td; };
  cform.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var body = { entity: entity.value, keys: keys.value.split(/[\s,]+/).filter(Boolean) };
    if (service.value) body.feature_service = service.value;
    else body.features = Array.from(cform.querySelectorAll("input[name=feature]:checked")).map(function (c) { return c.value; });
    reqOut.textContent = "POST /v1/lookup\n" + JSON.stringify(body, null, 2);
    status.textContent = "looking up…";
    fetch("/ui/api/lookup", { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, code: r.status, json: j }; }); })
      .then(function (res) {
        raw.textContent = JSON.stringify(res.json, null, 2);
        answer.innerHTML = "";
        if (!res.ok) {
          var p = document.createElement("p"); p.className = "problem"; p.id = "c-error";
          p.textContent = res.code + " " + ((res.json.error && res.json.error.message) || JSON.stringify(res.json));
          answer.appendChild(p); status.textContent = "failed (" + res.code + ")"; return;
        }
        status.textContent = "answered " + res.json.results.length + " key(s) as of " + res.json.as_of;
        var t = document.createElement("table"); t.id = "c-table";
        var head = t.createTHead().insertRow(), names = [];
        res.json.results.forEach(function (row) { Object.keys(row.features || {}).forEach(function (n) { if (names.indexOf(n) < 0) names.push(n); }); });
        names.sort();
        ["key"].concat(names).forEach(function (n) { var th = document.createElement("th"); th.scope = "col"; th.textContent = n; head.appendChild(th); });
        var tb = t.createTBody();
        res.json.results.forEach(function (row) {
          var tr = tb.insertRow(); tr.dataset.key = row.key;
          var th = document.createElement("th"); th.scope = "row"; th.textContent = row.key; tr.appendChild(th);
          names.forEach(function (n) {
            var v = (row.features || {})[n] || {};
            var td = cell(tr, shown(v.value), "n");
            td.dataset.feature = n; td.title = v.status || "";
            if (v.status && v.status !== "PRESENT") { var s = document.createElement("div"); s.className = "note"; s.textContent = v.status; td.appendChild(s); }
          });
        });
        answer.appendChild(t);
      })
      .catch(function (e) { status.textContent = "failed: " + e.message; });
  });
})();
