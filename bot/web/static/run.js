// agentbot's run pages: times that tick, and a running run's transcript as it grows.
// Fragments come rendered (and escaped) by the server; this only places them, the way
// bot/web/transcript.py's assemble() places them for a page rendered at once.
(function () {
  "use strict";
  var LOG_LABELS = {checkout: "Checkout output", setup: "Setup output", agent: "Agent output"};

  function duration(seconds) {
    var total = Math.max(0, Math.floor(seconds));
    var h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    if (h) { return h + "h " + m + "m"; }
    if (m) { return m + "m " + s + "s"; }
    return s + "s";
  }

  function tick() {
    var clocks = document.querySelectorAll("[data-since]");
    for (var i = 0; i < clocks.length; i++) {
      clocks[i].textContent = duration((Date.now() - Date.parse(clocks[i].dataset.since)) / 1000);
    }
  }
  setInterval(tick, 1000);

  var body = document.body;
  // The run list: while some of its runs are active, their states are fetched again.
  if (body.dataset.refresh) {
    setInterval(function () {
      fetch(window.location.href, {credentials: "same-origin"}).then(function (response) {
        return response.ok ? response.text() : null;
      }).then(function (text) {
        if (!text) { return; }
        var fresh = new DOMParser().parseFromString(text, "text/html").querySelector(".runs");
        var old = document.querySelector(".runs");
        if (fresh && old) { old.replaceWith(fresh); tick(); }
      }).catch(function () { /* the next round tries again */ });
    }, Number(body.dataset.refresh) * 1000);
  }
  if (body.dataset.live !== "1" || !window.EventSource) { return; }
  var transcript = document.getElementById("transcript");
  var status = document.getElementById("live");

  function parse(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
  }

  function placeLog(line) {
    var last = transcript.lastElementChild;
    if (!(last && last.matches("details.logs") && last.dataset.source === line.dataset.source)) {
      last = parse('<details class="logs"><summary><span class="label"></span> · ' +
                   '<span class="n">0</span> lines</summary><div class="lines"></div></details>');
      last.dataset.source = line.dataset.source;
      last.querySelector(".label").textContent = LOG_LABELS[line.dataset.source] || "Output";
      transcript.appendChild(last);
    }
    last.querySelector(".lines").appendChild(line);
    var count = last.querySelector(".n");
    count.textContent = String(Number(count.textContent) + 1);
  }

  function placeResult(result) {
    var cards = transcript.querySelectorAll(".tool[data-tool]");
    for (var i = cards.length - 1; i >= 0; i--) {
      var card = cards[i];
      if (card.dataset.tool !== result.dataset.tool) { continue; }
      if (card.querySelector(".result")) { break; }
      card.classList.remove("running", "ok", "bad");
      card.classList.add(result.classList.contains("bad") ? "bad" :
                         result.classList.contains("ok") ? "ok" : "running");
      var state = result.querySelector(".state");
      var headState = card.querySelector(".tool-head .state");
      if (state && headState) { headState.textContent = state.textContent; }
      card.querySelector(".res").appendChild(result);
      return;
    }
    transcript.appendChild(result);
  }

  function place(html) {
    var element = parse(html);
    if (!element || (element.id && document.getElementById(element.id))) { return; }
    var empty = document.querySelector(".note-empty");
    if (empty) { empty.remove(); }
    var follow = nearBottom();
    if (element.classList.contains("ln")) {
      placeLog(element);
    } else if (element.classList.contains("result")) {
      placeResult(element);
    } else {
      var plan = element.querySelector("template.plan-body");
      if (plan) {
        document.querySelector("#plan .body").replaceChildren(plan.content.cloneNode(true));
      }
      transcript.appendChild(element);
    }
    if (follow) { window.scrollTo(0, document.body.scrollHeight); }
  }

  function setStatus(text, css) {
    if (status) { status.textContent = text; status.className = "live " + css; }
  }

  var source = new EventSource("/runs/" + body.dataset.run + "/events?after=" + body.dataset.last);
  source.addEventListener("open", function () { setStatus("Live", "on"); });
  source.addEventListener("error", function () {
    if (source.readyState !== EventSource.CLOSED) { setStatus("Reconnecting…", "off"); }
  });
  source.addEventListener("ev", function (event) { place(event.data); });
  source.addEventListener("run", function (event) {
    var header = parse(event.data);
    var old = document.getElementById("hdr");
    if (header && old) { old.replaceWith(header); tick(); }
  });
  source.addEventListener("end", function (event) {
    source.close();
    body.dataset.live = "0";
    setStatus("Finished", "done");
    var final = parse(event.data);
    var old = document.getElementById("final");
    if (old) { old.remove(); }
    if (final) { transcript.after(final); }
  });
}());
