// The live board (server-sent events), ages that count up, and the alarm sound.
"use strict";
(function () {
  let audio = null;
  let beeping = null;

  function ages() {
    const now = Date.now();
    document.querySelectorAll("[data-opened]").forEach(function (cell) {
      const s = Math.max(0, Math.round((now - Date.parse(cell.dataset.opened)) / 1000));
      const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
      cell.textContent = h ? h + "h " + m + "m" : m ? m + "m " + (s % 60) + "s" : s + "s";
    });
  }

  function beep() {
    if (!audio) return;
    const osc = audio.createOscillator(), gain = audio.createGain();
    osc.frequency.value = 880; gain.gain.value = 0.2;
    osc.connect(gain); gain.connect(audio.destination);
    osc.start(); osc.stop(audio.currentTime + 0.4);
  }

  function alarm(on) {
    document.body.classList.toggle("alarm-on", on);
    if (on && !beeping) { beep(); beeping = setInterval(beep, 1500); }
    if (!on && beeping) { clearInterval(beeping); beeping = null; }
  }

  function board() {
    const rows = document.getElementById("board-rows");
    if (!rows) return;
    const status = document.getElementById("board-status");
    const source = new EventSource("/board/stream" + location.search);  // its site filter
    source.addEventListener("board", function (e) {
      const data = JSON.parse(e.data);
      rows.innerHTML = data.html;
      rows.dataset.at = data.at;
      ages();
      alarm(data.alarm);
      status.textContent = "";
    });
    source.onerror = function () {
      // the server restarting: the browser reconnects by itself; a session that ended
      // (401) closes the stream for good: reload, which shows the sign-in page, rather
      // than leave a board that no longer updates
      status.textContent = status.dataset.lost;
      if (source.readyState === EventSource.CLOSED) setTimeout(function () { location.reload(); }, 2000);
    };
    alarm(rows.querySelector("tr.alarm") !== null);
    const button = document.getElementById("sound");
    if (button) button.addEventListener("click", function () {
      audio = audio || new AudioContext();
      button.disabled = true;
      if (beeping) beep();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    ages(); setInterval(ages, 1000); board();
  });
})();
