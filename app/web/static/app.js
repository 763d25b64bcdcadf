// The web client's only script (no inline script anywhere: the CSP forbids it).
// - htmx requests carry the session's CSRF token in a header;
// - one server-sent event stream refreshes the board, and the parts of an open incident
//   room (each swapped by id), leaving alone a part the reader is typing in.
(function () {
  "use strict";
  var body = document.body;
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = body.dataset.csrf || "";
  });

  // A part holding the focus or a value the reader changed is not replaced: the notice
  // with its reload link says that something changed instead.
  function busy(part) {
    if (part.contains(document.activeElement) && document.activeElement !== part) {
      return true;
    }
    var fields = part.querySelectorAll("input, textarea, select");
    for (var n = 0; n < fields.length; n += 1) {
      var field = fields[n];
      if (field.type === "hidden") {
        continue;
      }
      if (field.type === "checkbox" || field.type === "radio") {
        if (field.checked !== field.defaultChecked) {
          return true;
        }
      } else if (field.tagName === "SELECT") {
        var initial = 0;  // with no option marked selected, the first one is
        for (var o = 0; o < field.options.length; o += 1) {
          if (field.options[o].defaultSelected) {
            initial = o;
          }
        }
        if (!field.multiple && field.selectedIndex !== initial) {
          return true;
        }
      } else if (field.value !== field.defaultValue) {
        return true;
      }
    }
    return false;
  }
  function showNotice() {
    var notice = document.getElementById("room-changed");
    if (notice) {
      notice.hidden = false;
    }
  }
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target;
    if (target && target.closest && target.closest("#room") && busy(target)) {
      event.detail.shouldSwap = false;
      showNotice();
    }
  });
  function emptyRoom(room) {
    // No longer visible to this reader: nothing of it stays on screen.
    var gone = document.createElement("p");
    gone.className = "notice";
    gone.id = "room-gone";
    gone.setAttribute("role", "status");
    gone.textContent = room.dataset.gone || "";
    room.replaceChildren(gone);
    room.dataset.key = "";
  }
  document.addEventListener("htmx:responseError", function (event) {
    var room = document.getElementById("room");
    var path = event.detail.pathInfo && event.detail.pathInfo.requestPath;
    if (room && room.dataset.key && path === "/incidents/" + room.dataset.key + "/parts") {
      if (event.detail.xhr.status === 404) {
        emptyRoom(room);
      } else {
        showNotice();
      }
    }
  });

  if (!window.EventSource || !body.dataset.live) {
    return;
  }
  var openRoom = document.getElementById("room");
  var source = new EventSource(
    openRoom ? "/events?incident=" + encodeURIComponent(openRoom.dataset.incidentId) : "/events"
  );
  function refreshBoard() {
    var board = document.getElementById("board");
    if (board && window.htmx) {
      window.htmx.trigger(board, "refresh");
    }
  }
  function refreshRoom(incidentId) {
    var room = document.getElementById("room");
    if (!room || !room.dataset.key || (incidentId && room.dataset.incidentId !== incidentId)) {
      return;
    }
    if (!window.htmx) {
      showNotice();
      return;
    }
    window.htmx.ajax("GET", "/incidents/" + room.dataset.key + "/parts", {
      source: room,
      swap: "none",
    }).then(function () {
      room.dataset.refreshed = String(Number(room.dataset.refreshed || "0") + 1);
    });
  }
  source.addEventListener("incident", function (event) {
    var change = {};
    try {
      change = JSON.parse(event.data);
    } catch (ignored) {
      change = {};
    }
    refreshBoard();
    refreshRoom(change.id);
    body.dataset.lastEvent = event.lastEventId || "";
  });
  source.addEventListener("gone", function (event) {
    var room = document.getElementById("room");
    var change = {};
    try {
      change = JSON.parse(event.data);
    } catch (ignored) {
      change = {};
    }
    if (room && room.dataset.incidentId === change.id) {
      emptyRoom(room);
    }
  });
  source.addEventListener("reset", function () {
    refreshBoard();
    refreshRoom(null);
  });
})();
