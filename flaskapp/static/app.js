/* Demand response web console: countdowns, live regions, bid rows, previews.
   Plain JavaScript, no libraries; every page also works without it. */
(function () {
  "use strict";
  var body = document.body;
  var serverOffset = (parseInt(body.dataset.serverTime, 10) || 0) * 1000 - Date.now();
  var refreshMs = Math.max(500, parseInt(body.dataset.refreshMs, 10) || 2000);

  var onDeadline = null;  // set by the live regions: a countdown reached zero
  function now() { return Math.floor((Date.now() + serverOffset) / 1000); }

  /* -- countdowns ------------------------------------------------------------------- */
  function fmt(seconds) {
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    var mm = (h ? String(m).padStart(2, "0") : String(m)) + ":" + String(s).padStart(2, "0");
    return (h ? h + ":" : "") + mm;
  }
  function tick() {
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var left = parseInt(el.dataset.deadline, 10) - now();
      if (left > 0) {
        el.textContent = fmt(left) + " left to bid";
        el.classList.toggle("soon", left <= 30);
      } else {
        if (!el.classList.contains("over") && onDeadline) { onDeadline(); }
        el.textContent = "bidding closed";
        el.classList.add("over");
      }
    });
  }
  tick();
  setInterval(tick, 1000);

  /* -- live regions: poll a JSON endpoint, re-render the region when its data change -- */
  var VOLATILE = ["server_time", "seconds_left", "block", "block_time", "log", "balance_wei", "seen_at"];
  function signature(data) {
    return JSON.stringify(data, function (key, value) { return VOLATILE.indexOf(key) >= 0 ? undefined : value; });
  }
  var groups = {};
  document.querySelectorAll("[data-live-src]").forEach(function (el) {
    (groups[el.dataset.liveSrc] = groups[el.dataset.liveSrc] || []).push(el);
  });
  var refreshing = false, pending = {}, pollers = [];
  function refreshRegions(ids) {
    ids.forEach(function (id) { pending[id] = true; });
    if (refreshing) { return; }  // the running refresh picks these up when it ends
    var batch = Object.keys(pending);
    pending = {};
    refreshing = true;
    // X-DR-Refresh: the server leaves flashed messages for the page the person sees next.
    fetch(location.pathname + location.search, { headers: { "Accept": "text/html", "X-DR-Refresh": "1" },
                                                 credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        batch.forEach(function (id) {
          var old = document.getElementById(id), fresh = doc.getElementById(id);
          if (!old || !fresh) { return; }
          if (old.contains(document.activeElement) && document.activeElement.matches("input, select, textarea")) { return; }
          var openDetails = Array.prototype.map.call(old.querySelectorAll("details[open] > summary"), function (s) { return s.textContent; });
          old.innerHTML = fresh.innerHTML;
          old.querySelectorAll("details > summary").forEach(function (s) {
            if (openDetails.indexOf(s.textContent) >= 0) { s.parentElement.open = true; }
          });
        });
        tick();
      })
      .catch(function () { batch.forEach(function (id) { pending[id] = true; }); })
      .then(function () {
        refreshing = false;
        if (Object.keys(pending).length) { setTimeout(function () { refreshRegions([]); }, 200); }
      });
  }
  Object.keys(groups).forEach(function (src) {
    var last = null, busy = false;
    function poll() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(src, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (r) {
          if (r.status === 401) { location.reload(); }  // the session ended: show the sign-in page
          return r.json().then(function (data) { return { ok: r.ok, data: data }; });
        })
        .then(function (res) {
          var sig = signature(res.data);
          // The first answer is compared with nothing: the page may have been rendered a moment
          // before a change (a daemon started from this page says "starting" and is listening
          // 50 ms later), so it refreshes the regions once too.
          if (last === null || sig !== last) {
            refreshRegions(groups[src].map(function (el) { return el.id; }));
          }
          last = sig;
        })
        .catch(function () { /* server away: keep the page, retry */ })
        .then(function () { busy = false; });
    }
    pollers.push(function () {
      poll();
      setInterval(poll, refreshMs);
      document.addEventListener("visibilitychange", function () { if (!document.hidden) { poll(); } });
    });
  });

  /* -- live updates: server-sent events from /api/live; polling only when they fail ------ */
  function allRegions() {
    return Object.keys(groups).reduce(function (ids, src) {
      return ids.concat(groups[src].map(function (el) { return el.id; }));
    }, []);
  }
  var polling = false;
  function startPolling() {
    if (polling) { return; }
    polling = true;
    body.dataset.liveMode = "poll";
    pollers.forEach(function (start) { start(); });
  }
  function listen(url) {
    var source = new EventSource(url), failures = 0;
    body.dataset.liveMode = "connecting";
    body.dataset.liveEvents = "0";
    source.addEventListener("hello", function () {
      failures = 0;
      body.dataset.liveMode = "sse";
      refreshRegions(allRegions());  // whatever changed while the stream was away
    });
    ["chain", "status", "daemon"].forEach(function (name) {
      source.addEventListener(name, function () {
        body.dataset.liveEvents = String(parseInt(body.dataset.liveEvents, 10) + 1);
        refreshRegions(allRegions());
      });
    });
    source.addEventListener("bye", function (event) {
      var reason = "";
      try { reason = JSON.parse(event.data).reason; } catch (e) { /* ignore */ }
      if (reason === "signed-out") { source.close(); location.reload(); }
      // "reconnect" and "shutdown": the browser reconnects by itself (the stream said retry: 3 s)
    });
    source.onerror = function () {
      failures += 1;
      // CLOSED: the server refused the stream (401, 503 over its cap, 404 when switched off);
      // three failed reconnects in a row: a proxy that buffers or drops streams. Poll instead.
      if (source.readyState === EventSource.CLOSED || failures >= 3) {
        source.close();
        startPolling();
      }
    };
    onDeadline = function () { if (!polling) { refreshRegions(allRegions()); } };
  }
  if (Object.keys(groups).length) {
    if (body.dataset.liveStream && window.EventSource) { listen(body.dataset.liveStream); } else { startPolling(); }
  }

  /* -- bid rows: add/remove without a round trip, live curve preview -------------------- */
  var bidsForm = document.getElementById("bids-form");
  if (bidsForm) {
    var rows = document.getElementById("bid-rows");
    var maxRows = parseInt(bidsForm.dataset.maxRows, 10) || 64;
    var curve = document.getElementById("curve");
    var nextIndex = rows.querySelectorAll("[data-row]").length;
    var timer = null;

    function renumber() {
      rows.querySelectorAll("[data-row]").forEach(function (row, i) {
        var n = i + 1;
        row.querySelector("legend").textContent = "Bid " + n;
        row.querySelectorAll(".row-label").forEach(function (label) {
          label.textContent = label.textContent.replace(/\(bid \d+\)/, "(bid " + n + ")");
        });
        row.querySelector("[data-remove]").setAttribute("aria-label", "Remove bid " + n);
      });
    }
    function updateCurve() {
      if (!curve) { return; }
      var params = new URLSearchParams();
      rows.querySelectorAll("[data-row]").forEach(function (row) {
        var inputs = row.querySelectorAll("input");
        params.append("kw", inputs[0].value.trim());
        params.append("price", inputs[1].value.trim());
      });
      var currency = bidsForm.querySelector("select[name=currency]");
      if (currency) { params.append("currency", currency.value); }
      // The cap is in the open request's currency: drawn only while the prices are in it too.
      if (bidsForm.dataset.cap && (!currency || currency.value === bidsForm.dataset.capCurrency)) {
        params.append("cap", bidsForm.dataset.cap);
      }
      fetch(curve.dataset.curveSrc + "?" + params.toString(), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (svg) { curve.innerHTML = svg; })
        .catch(function () {});
    }
    function schedule() { clearTimeout(timer); timer = setTimeout(updateCurve, 250); }

    rows.addEventListener("input", schedule);
    bidsForm.addEventListener("change", function (event) { if (event.target.name === "currency") { schedule(); } });
    rows.addEventListener("click", function (event) {
      var button = event.target.closest("[data-remove]");
      if (!button) { return; }
      event.preventDefault();
      var all = rows.querySelectorAll("[data-row]");
      var row = button.closest("[data-row]");
      if (all.length === 1) {
        row.querySelectorAll("input").forEach(function (input) { input.value = ""; });
      } else {
        var focusTarget = row.nextElementSibling || row.previousElementSibling;
        row.remove();
        if (focusTarget) { var f = focusTarget.querySelector("input"); if (f) { f.focus(); } }
      }
      renumber();
      schedule();
    });
    document.getElementById("add-row").addEventListener("click", function (event) {
      event.preventDefault();
      var all = rows.querySelectorAll("[data-row]");
      if (all.length >= maxRows) { return; }
      var template = all[all.length - 1];
      var clone = template.cloneNode(true);
      var index = nextIndex++;
      clone.querySelectorAll("input").forEach(function (input) {
        input.name = input.name.replace(/rows-\d+-/, "rows-" + index + "-");
        input.id = input.id.replace(/rows-\d+-/, "rows-" + index + "-");
        input.value = "";
        input.removeAttribute("aria-invalid");
        input.removeAttribute("aria-describedby");
      });
      clone.querySelectorAll("label").forEach(function (label) {
        label.htmlFor = label.htmlFor.replace(/rows-\d+-/, "rows-" + index + "-");
      });
      clone.querySelectorAll(".error, .warn").forEach(function (el) { el.remove(); });
      clone.querySelectorAll(".has-error").forEach(function (el) { el.classList.remove("has-error"); });
      rows.appendChild(clone);
      renumber();
      clone.querySelector("input").focus();
    });
  }

  /* -- utility request form: live payout preview from /api/utility/preview ------------- */
  var requestForm = document.getElementById("request-form");
  if (requestForm) {
    var preview = document.getElementById("preview-box");
    var ptimer = null;
    function cell(text, numeric) {
      var td = document.createElement("td");
      td.textContent = text;
      if (numeric) { td.className = "num"; }
      return td;
    }
    function renderPreview(data) {
      preview.innerHTML = "";
      var h = document.createElement("h3");
      h.textContent = "Payout preview";
      preview.appendChild(h);
      if (data.error) {
        var p = document.createElement("p");
        p.className = "error";
        p.textContent = data.error;
        preview.appendChild(p);
        return;
      }
      var dl = document.createElement("dl");
      dl.className = "facts compact";
      [["Target", data.display.target + ", event " + data.display.window],
       ["Cap", data.display.cap + ", steps of " + data.display.tick],
       ["Escrowed budget", data.display.budget + " (minimum " + data.display.min_budget + ")"],
       ["Per kW at the cap", data.display.per_kw_at_cap],
       ["Bidding closes", data.display.deadline]].concat(data.with_terms ? [
        ["Terms", data.terms.display.mode + (data.terms.bond_wei !== "0" ? "; bond " + data.terms.display.bond : "")]
      ].concat(data.terms.sealed ? [["Reveals until", data.terms.display.reveal_deadline]] : [])
       .concat(data.terms.metered ? [["Reports until", data.terms.display.report_deadline],
                                     ["Disputes until", data.terms.display.dispute_deadline]] : []) : []
      ).forEach(function (pair) {
        var dt = document.createElement("dt"), dd = document.createElement("dd");
        dt.textContent = pair[0]; dd.textContent = pair[1];
        dl.appendChild(dt); dl.appendChild(dd);
      });
      preview.appendChild(dl);
      var table = document.createElement("table");
      table.className = "data";
      table.innerHTML = "<caption>If the full target clears at…</caption><thead><tr><th scope=\"col\" class=\"num\">Price</th><th scope=\"col\" class=\"num\">You pay</th><th scope=\"col\" class=\"num\">Refund</th></tr></thead>";
      var tbody = document.createElement("tbody");
      data.scenarios.forEach(function (s) {
        var tr = document.createElement("tr");
        tr.appendChild(cell(s.display.price, true));
        tr.appendChild(cell(s.display.promised, true));
        tr.appendChild(cell(s.display.refund, true));
        tbody.appendChild(tr);
      });
      table.appendChild(tbody);
      preview.appendChild(table);
    }
    function updatePreview() {
      var fd = new FormData(requestForm), params = new URLSearchParams();
      ["target_kw", "bidding_s", "delay_s", "duration_s", "cap", "budget_eth", "rule",
       "reveal_s", "report_s", "dispute_s", "bond_eth"].forEach(function (k) {
        var v = fd.get(k);
        if (v !== null && String(v).trim() !== "") { params.append(k, String(v).trim()); }
      });
      if (!params.get("target_kw") || !params.get("cap")) { return; }
      fetch(requestForm.dataset.previewSrc + "?" + params.toString(), { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(renderPreview)
        .catch(function () {});
    }
    requestForm.addEventListener("input", function () { clearTimeout(ptimer); ptimer = setTimeout(updatePreview, 300); });
  }
})();
