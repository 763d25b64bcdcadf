// The web client's only script (no inline script anywhere: the CSP forbids it).
// - htmx requests carry the session's CSRF token in a header;
// - one server-sent event stream refreshes the board, and flags a changed incident room.
(function () {
  "use strict";
  var body = document.body;
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = body.dataset.csrf || "";
  });
  if (!window.EventSource || !body.dataset.live) {
    return;
  }
  var source = new EventSource("/events");
  function refreshBoard() {
    var board = document.getElementById("board");
    if (board && window.htmx) {
      window.htmx.trigger(board, "refresh");
    }
  }
  function flagRoom(incidentId) {
    var room = document.getElementById("room");
    if (room && (!incidentId || room.dataset.incidentId === incidentId)) {
      var notice = document.getElementById("room-changed");
      if (notice) {
        notice.hidden = false;
      }
    }
  }
  source.addEventListener("incident", function (event) {
    var change = {};
    try {
      change = JSON.parse(event.data);
    } catch (ignored) {
      change = {};
    }
    refreshBoard();
    flagRoom(change.id);
    body.dataset.lastEvent = event.lastEventId || "";
  });
  source.addEventListener("reset", function () {
    refreshBoard();
    flagRoom(null);
  });
})();
