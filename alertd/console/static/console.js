// Every page: the alarm banner, kept live (server-sent events), and the alarm sound.
// The board: its rows too. Ages count up every second.
"use strict";
(function () {
  let audio = null;
  let beeping = null;
  let tone = "";

  // how long an incident has been open, in the page's language: `1h 5m` or `1小时5分`
  function ages() {
    const now = Date.now();
    document.querySelectorAll("[data-opened]").forEach(function (cell) {
      const s = Math.max(0, Math.round((now - Date.parse(cell.dataset.opened)) / 1000));
      const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
      const u = document.documentElement.lang === "zh-CN" ? ["小时", "分", "秒"] : ["h ", "m ", "s"];
      cell.textContent = h ? h + u[0] + m + u[1].trim() : m ? m + u[1] + (s % 60) + u[2] : s + u[2];
    });
  }

  // a real alarm: two high notes every 1.5 s; a drill: one low note every 4 s
  function beep() {
    if (!audio || audio.state !== "running") return;
    const notes = tone === "drill" ? [[440, 0]] : [[880, 0], [1175, 0.45]];
    notes.forEach(function (n) {
      const osc = audio.createOscillator(), gain = audio.createGain();
      osc.frequency.value = n[0]; gain.gain.value = 0.2;
      osc.connect(gain); gain.connect(audio.destination);
      osc.start(audio.currentTime + n[1]); osc.stop(audio.currentTime + n[1] + 0.4);
    });
  }

  function ring(real, drill) {
    const now = real ? "real" : drill ? "drill" : "";
    document.body.classList.toggle("alarm-on", real);
    document.body.classList.toggle("drill-on", !real && drill);
    if (now === tone) return;
    tone = now;
    if (beeping) { clearInterval(beeping); beeping = null; }
    if (now) { beep(); beeping = setInterval(beep, now === "drill" ? 4000 : 1500); }
  }

  // One click per sign-in: the choice is kept for the browser tab's session, and each
  // page starts the sound itself; a browser that still wants a click on this page gets
  // it from the first click anywhere (the button says so).
  function sound() {
    const button = document.getElementById("sound");
    if (!button) return;
    function start() {
      audio = audio || new AudioContext();
      const said = function () {
        const running = audio.state === "running";
        button.textContent = running ? button.dataset.on : button.dataset.resume;
        button.classList.toggle("on", running);
        if (running && tone) beep();
      };
      if (audio.state === "running") { said(); return; }
      audio.resume().then(said, said);
      said();
    }
    button.addEventListener("click", function () {
      sessionStorage.setItem("alertd-sound", "on");
      start();
    });
    if (sessionStorage.getItem("alertd-sound") === "on") {
      start();
      const again = function () { if (audio) audio.resume().then(start); };
      document.addEventListener("click", again, { once: true });
      document.addEventListener("keydown", again, { once: true });
    }
  }

  function live() {
    const banner = document.getElementById("alarm-banner");
    if (!banner) return;
    const rows = document.getElementById("board-rows");
    const status = document.getElementById("alarms-status");
    // the board keeps its site filter; every other page hears all the account's sites
    const query = rows ? (location.search ? location.search + "&rows=1" : "?rows=1") : "";
    const source = new EventSource("/board/stream" + query);
    source.addEventListener("board", function (e) {
      const data = JSON.parse(e.data);
      banner.innerHTML = data.banner;
      if (rows && data.html !== undefined) { rows.innerHTML = data.html; rows.dataset.at = data.at; pictures(); }
      const strip = document.getElementById("sites");
      if (strip && data.strip !== undefined) strip.innerHTML = data.strip;
      banner.dataset.at = data.at;
      ages();
      ring(data.alarm, data.drill);
      status.textContent = "";
    });
    source.onerror = function () {
      // the server restarting: the browser reconnects by itself; a session that ended
      // (401) closes the stream for good: reload, which shows the sign-in page, rather
      // than leave a page that no longer updates
      status.textContent = status.dataset.lost;
      if (source.readyState === EventSource.CLOSED) setTimeout(function () { location.reload(); }, 2000);
    };
    const items = banner.querySelectorAll(".alarm-item");
    const real = Array.prototype.some.call(items, function (a) { return !a.classList.contains("drill"); });
    ring(real, items.length > 0 && !real);
  }

  // The board: the buildings of its most urgent incidents (alarms first), floor by
  // floor, fetched again as the rows change; a late answer never overwrites a newer one.
  // At most one drawing every 2 s (the last update is always drawn): 20 desks in a
  // storm of updates must not keep the console from the alert path's reads.
  const PICTURES = 2, EVERY_MS = 2000;
  let drawing = 0, drawn = 0, later = null;
  function pictures() {
    const section = document.getElementById("pictures");
    if (!section) return;
    const wait = drawn + EVERY_MS - Date.now();
    if (wait > 0) {
      if (!later) later = setTimeout(function () { later = null; pictures(); }, wait);
      return;
    }
    drawn = Date.now();
    const box = section.querySelector(".figures");
    const rows = Array.prototype.slice.call(document.querySelectorAll("#board-rows tr[data-incident]"));
    const alarm = function (r) { return r.classList.contains("alarm"); };
    const chosen = rows.filter(alarm).concat(rows.filter(function (r) { return !alarm(r); })).slice(0, PICTURES);
    const turn = ++drawing;
    Promise.all(chosen.map(function (row) {
      return fetch("/incidents/" + row.dataset.incident + "/building", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : ""; }, function () { return ""; })
        .then(function (svg) { return { row: row, svg: svg }; });
    })).then(function (figures) {
      if (turn !== drawing) return;
      box.textContent = "";
      figures.forEach(function (d) {
        if (!d.svg) return;
        const figure = document.createElement("figure");
        figure.dataset.incident = d.row.dataset.incident;
        const caption = document.createElement("figcaption");
        const link = document.createElement("a");
        link.href = "/incidents/" + d.row.dataset.incident;
        link.textContent = "#" + d.row.dataset.incident + " " + d.row.cells[d.row.cells.length - 5].textContent;
        caption.appendChild(link);
        figure.appendChild(caption);
        figure.insertAdjacentHTML("beforeend", d.svg);
        box.appendChild(figure);
      });
      section.hidden = box.children.length === 0;
    });
  }

  // an error page's "go back": the page the person came from (its form as they left it)
  function back() {
    const link = document.getElementById("back");
    if (link && history.length > 1) link.addEventListener("click", function (e) {
      e.preventDefault(); history.back();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    ages(); setInterval(ages, 1000); sound(); live(); back();
    // answers to the roll call and door checks change the pictures without changing the rows
    pictures(); setInterval(pictures, 15000);
  });
})();
