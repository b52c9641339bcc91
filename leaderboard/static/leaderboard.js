// Sortable columns and a filter box for the leaderboard tables, with no server and no libraries.
// Works on every <table class="sortable"> (header buttons) and every <input data-filter-table="ID">.
// The initial state can come from the URL: ?filter=text&sort=COLUMN&dir=asc|desc (or the same after '#'),
// so a link can point at a filtered, sorted view. Only textContent and attributes are read or written:
// this file never parses HTML, so text from the data cannot become markup here either.
(function () {
  "use strict";

  function params() {
    var out = {};
    var sources = [window.location.search.replace(/^\?/, ""), window.location.hash.replace(/^#/, "")];
    sources.forEach(function (s) {
      if (!s) return;
      var p = new URLSearchParams(s);
      p.forEach(function (v, k) { out[k] = v; });
    });
    return out;
  }

  function sortValue(cell) {
    if (!cell) return { empty: true, num: NaN, text: "" };
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (raw === "" || raw === "—") return { empty: true, num: NaN, text: "" };
    var num = Number(raw);
    return { empty: false, num: num, text: raw.toLowerCase() };
  }

  function compare(a, b) {
    if (a.empty || b.empty) return a.empty === b.empty ? 0 : (a.empty ? 1 : -1);
    if (!isNaN(a.num) && !isNaN(b.num)) return a.num - b.num;
    return a.text < b.text ? -1 : a.text > b.text ? 1 : 0;
  }

  function sortTable(table, colIndex, dir) {
    var body = table.tBodies[0];
    if (!body) return;
    var rows = Array.prototype.slice.call(body.rows);
    var sign = dir === "desc" ? -1 : 1;
    var keyed = rows.map(function (row, i) { return { row: row, i: i, v: sortValue(row.cells[colIndex]) }; });
    keyed.sort(function (x, y) {
      var c = compare(x.v, y.v);
      if (x.v.empty || y.v.empty) return c || x.i - y.i; // missing values stay last in both directions
      return sign * c || x.i - y.i;
    });
    keyed.forEach(function (k) { body.appendChild(k.row); });
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    for (var h = 0; h < heads.length; h++) {
      if (h === colIndex) heads[h].setAttribute("aria-sort", dir === "desc" ? "descending" : "ascending");
      else heads[h].removeAttribute("aria-sort");
    }
    table.setAttribute("data-sorted-by", heads[colIndex] ? (heads[colIndex].getAttribute("data-col") || "") : "");
    table.setAttribute("data-sorted-dir", dir);
  }

  function setupSort(table) {
    if (!table.tHead) return;
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, idx) {
      var button = th.querySelector("button");
      if (!button) return;
      button.addEventListener("click", function () {
        var dir = th.getAttribute("aria-sort") === "ascending" ? "desc" : "asc";
        sortTable(table, idx, dir);
      });
    });
  }

  function columnIndex(table, id) {
    if (!table.tHead) return -1;
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) if (heads[i].getAttribute("data-col") === id) return i;
    return -1;
  }

  function applyFilter(input) {
    var table = document.getElementById(input.getAttribute("data-filter-table"));
    if (!table || !table.tBodies[0]) return;
    var terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var rows = table.tBodies[0].rows;
    var shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var text = rows[i].textContent.toLowerCase();
      var ok = terms.every(function (t) { return text.indexOf(t) !== -1; });
      rows[i].hidden = !ok;
      if (ok) shown++;
    }
    var count = document.querySelector('[data-count-for="' + table.id + '"]');
    var noun = rows.length === 1 ? " row" : " rows";
    if (count) count.textContent = terms.length ? shown + " of " + rows.length + noun : rows.length + noun;
    table.setAttribute("data-shown", String(shown));
  }

  document.addEventListener("DOMContentLoaded", function () {
    var p = params();
    var tables = document.querySelectorAll("table.sortable");
    Array.prototype.forEach.call(tables, setupSort);
    var inputs = document.querySelectorAll("input[data-filter-table]");
    Array.prototype.forEach.call(inputs, function (input, i) {
      // The URL's filter applies to the page's first filter box (the main table).
      if (i === 0 && typeof p.filter === "string") input.value = p.filter;
      input.addEventListener("input", function () { applyFilter(input); });
      applyFilter(input);
    });
    if (p.sort && tables.length) {
      var idx = columnIndex(tables[0], p.sort);
      if (idx >= 0) sortTable(tables[0], idx, p.dir === "desc" ? "desc" : "asc");
    }
    document.documentElement.setAttribute("data-js", "ready");
  });
})();
