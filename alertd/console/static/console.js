// Every page: the alarm banner, kept live (server-sent events), and the alarm sound.
// The board: its rows too. Ages count up every second.
"use strict";
(function () {
  let audio = null;
  let beeping = null;
  let tone = "";

  function ages() {
    const now = Date.now();
    document.querySelectorAll("[data-opened]").forEach(function (cell) {
      const s = Math.max(0, Math.round((now - Date.parse(cell.dataset.opened)) / 1000));
      const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
      cell.textContent = h ? h + "h " + m + "m" : m ? m + "m " + (s % 60) + "s" : s + "s";
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
      if (rows && data.html !== undefined) { rows.innerHTML = data.html; rows.dataset.at = data.at; }
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

  // an error page's "go back": the page the person came from (its form as they left it)
  function back() {
    const link = document.getElementById("back");
    if (link && history.length > 1) link.addEventListener("click", function (e) {
      e.preventDefault(); history.back();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    ages(); setInterval(ages, 1000); sound(); live(); back();
  });
})();
