// Live parts of the pages: an order's status and the notification feed,
// over server-sent events. The pages work without this file.
(function () {
  "use strict";
  var streams = [];

  function closeAll() {
    streams.forEach(function (s) { s.close(); });
    streams = [];
  }

  function follow(url, name, handle) {
    var source = new EventSource(url);
    source.addEventListener(name, function (event) {
      handle(JSON.parse(event.data), source);
    });
    streams.push(source);
  }

  function words(status) {
    var text = String(status || "").replace(/_/g, " ").toLowerCase();
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  var FINAL = ["DELIVERED", "CANCELLED", "REFUNDED"];

  function start() {
    closeAll();
    var status = document.getElementById("order-status");
    if (status && status.dataset.live) {
      follow(status.dataset.live, "status", function (data, source) {
        if (data.status !== status.dataset.status) {
          status.dataset.status = data.status;
          status.textContent = words(data.status);
          document.querySelectorAll("form[data-statuses]").forEach(function (form) {
            if (form.dataset.statuses.split(" ").indexOf(data.status) < 0) {
              form.remove();
            }
          });
        }
        var shipment = document.getElementById("shipment-status");
        if (shipment && data.shipment_status) {
          shipment.textContent = words(data.shipment_status);
        }
        if (FINAL.indexOf(data.status) >= 0) {
          source.close();
        }
      });
    }
    var feed = document.getElementById("feed");
    if (feed && feed.dataset.live) {
      follow(feed.dataset.live, "notification", function (n) {
        var item = document.createElement("li");
        var title = document.createElement("strong");
        title.textContent = n.title;
        item.appendChild(title);
        item.appendChild(document.createElement("br"));
        item.appendChild(document.createTextNode(n.body));
        feed.insertBefore(item, feed.firstChild);
        var empty = document.getElementById("feed-empty");
        if (empty) { empty.remove(); }
      });
    }
  }

  document.addEventListener("DOMContentLoaded", start);
  // htmx swaps pages in without a load: follow what the new page shows.
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target === document.body) { start(); }
  });
  window.addEventListener("pagehide", closeAll);
})();
