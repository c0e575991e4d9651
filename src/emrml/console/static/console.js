// The console's progressive parts: page data, live job and stream tables. Pages work without it.
"use strict";
(function () {
  function pageData() {
    var node = document.getElementById("page-data");
    try { return node ? JSON.parse(node.textContent) : {}; } catch (e) { return {}; }
  }
  window.emrmlPageData = pageData;

  // A name as the pages' filter ``visible`` (emrml/console/formats.py) shows it: each character that draws
  // nothing yet changes how it reads ("report\u202eslx.exe" reads "reportexe.xls") as its code point,
  // "[U+202E]". The set is the filter's own, given by the page on this script's tag (base.html), so the
  // two cannot drift. For text only: an address or a form's value keeps the name as it is.
  var INVISIBLE = new RegExp(document.currentScript.getAttribute("data-invisible"), "gu");
  function visible(text) {
    if (typeof text !== "string") return text;
    return text.replace(INVISIBLE, function (found) {
      return "[U+" + found.codePointAt(0).toString(16).toUpperCase().padStart(4, "0") + "]";
    });
  }
  window.emrmlVisible = visible;

  function fmtTime(epoch) {
    if (typeof epoch !== "number") return "";
    return new Date(epoch * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function fmtMillis(value) {
    if (typeof value !== "number") return "";
    return (value / 1000).toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 }) + " s";
  }

  function cell(row, field) {
    var td = document.createElement("td");
    if (field) td.setAttribute("data-field", field);
    row.appendChild(td);
    return td;
  }

  // A row for a job the page did not have when it loaded, built as the template builds its rows
  // (text only: names are untrusted).
  function jobRow(table, job) {
    var row = document.createElement("tr");
    row.setAttribute("data-id", job.Kind + "/" + job.Id);
    var named = document.createElement("span");
    named.className = "fit";
    cell(row).appendChild(named);
    if (job.Readable) {
      var link = document.createElement("a");
      link.href = table.getAttribute("data-base") + job.Path + "/" + encodeURIComponent(job.Id);
      link.textContent = visible(job.Name || job.Id);
      named.appendChild(link);
    } else {
      // An object the user may list but not open: its name or id, as the template names it.
      var code = document.createElement(job.Name ? "span" : "code");
      code.textContent = visible(job.Name || job.Id);
      var note = document.createElement("small");
      note.className = "unreadable";
      note.textContent = "(you may not open it)";
      named.appendChild(code);
      named.appendChild(document.createTextNode(" "));
      named.appendChild(note);
    }
    var kind = cell(row);
    kind.className = "word";
    kind.textContent = job.Kind;
    cell(row, "Status");
    cell(row, "Message").className = "prose";
    var progress = document.createElement("progress");
    progress.max = 100;
    progress.setAttribute("data-field", "Progress");
    progress.setAttribute("aria-label", "progress of " + job.Id);
    var td = cell(row);
    td.appendChild(progress);
    td.appendChild(document.createTextNode(" "));
    var text = document.createElement("span");
    text.setAttribute("data-field", "ProgressText");
    td.appendChild(text);
    ["StartedAt", "FinishedAt", "ComputeTime", "RanOn", "Cancel"].forEach(function (field) { cell(row, field); });
    return row;
  }

  // A row's status, styled as the status macro styles it (a FAILED job or stream in red, as every FAILED
  // object).
  function setStatus(row, value) {
    var cell = row.querySelector('[data-field="Status"]');
    var label = cell.querySelector(".status");
    if (!label) {
      label = document.createElement("span");
      cell.textContent = "";
      cell.appendChild(label);
    }
    label.className = "status status-" + String(value || "").toLowerCase();
    label.textContent = value || "";
  }

  // A job's cancel form (from the page's #job-cancel template) while the twin offers it (``Cancels``, the
  // delete address), gone once the job has ended.
  function fillCancel(row, job) {
    var cancel = row.querySelector('[data-field="Cancel"]');
    var form = cancel.querySelector("form");
    if (!job.Cancels) {
      if (form) cancel.removeChild(form);
      return;
    }
    if (form) return;
    form = document.getElementById("job-cancel").content.firstElementChild.cloneNode(true);
    form.action = document.querySelector('[data-live="jobs"]').getAttribute("data-base") + job.Cancels;
    var button = form.querySelector("button");
    var name = visible(job.Name || job.Id);
    button.setAttribute("aria-label", "Cancel the job of " + name);
    button.setAttribute("data-confirm", "Cancel the job of " + name + "? Its " + job.Kind +
      " is deleted (marked DELETED, no longer usable) and its job stops.");
    cancel.appendChild(form);
  }

  function fill(row, job) {
    var progress = row.querySelector('[data-field="Progress"]');
    progress.value = job.Progress || 0;
    progress.textContent = (job.Progress || 0) + " %";
    row.querySelector('[data-field="ProgressText"]').textContent = Math.round(job.Progress || 0) + " %";
    setStatus(row, job.Status);
    row.querySelector('[data-field="StartedAt"]').textContent = fmtTime(job.StartedAt);
    row.querySelector('[data-field="FinishedAt"]').textContent = fmtTime(job.FinishedAt);
    row.querySelector('[data-field="ComputeTime"]').textContent = fmtMillis(job.ComputeTime);
    row.querySelector('[data-field="Message"]').textContent = visible(job.Message || "");
    var ids = job.SparkJobIds || [];
    row.querySelector('[data-field="RanOn"]').textContent = job.SparkApplicationId
      ? "Spark application " + job.SparkApplicationId +
        (ids.length ? ", " + (ids.length === 1 ? "job " : "jobs ") + ids.join(", ") : "")
      : "";
    fillCancel(row, job);
  }

  // A stream's row follows its twin's entry as the template writes it: its figures, and its start form
  // (from the page's #stream-start template) only while it is startable; the form is left alone
  // otherwise, so that what is being typed in it stays.
  function fillStream(table, row, stream) {
    function set(field, text) { row.querySelector('[data-field="' + field + '"]').textContent = text; }
    function shown(value) { return value === null || value === undefined ? "" : String(value); }
    setStatus(row, shown(stream.Status));
    set("Consumers", shown(stream.Consumers));
    set("Shards", shown(stream.Shards));
    set("Records", [stream.RecordsIn, stream.RecordsOut, stream.RecordsFailed].map(shown).join(" / "));
    set("RecordsPerSecond", shown(stream.RecordsPerSecond));
    set("Lag", fmtMillis(stream.MillisBehindLatest));
    set("Message", visible(stream.Message || ""));
    var start = row.querySelector('[data-field="Start"]');
    var form = start.querySelector("form");
    if (!stream.Startable) {
      if (form) start.removeChild(form);
      return;
    }
    if (!form) {
      form = document.getElementById("stream-start").content.firstElementChild.cloneNode(true);
      form.action = table.getAttribute("data-base") + "streams/" + encodeURIComponent(stream.StreamId) + "/start";
      var field = form.querySelector('input[name="consumers"]');
      field.id = "consumers-" + stream.StreamId;
      form.querySelector("label").htmlFor = field.id;
      form.querySelector("button").setAttribute("aria-label", "Start the consumers of " + visible(stream.Name || stream.StreamId));
      start.appendChild(form);
    }
    form.querySelector("button").textContent = stream.Status === "STOPPED" ? "Start" : "Start again";
  }

  // A row for a stream the page did not have when it loaded, built as the template builds its rows
  // (text only: names are untrusted): its model by name (``names``, the twin's ReferenceNames) where the
  // user may open it; fillStream writes its figures and start form.
  function streamRow(base, stream, names) {
    var row = document.createElement("tr");
    row.setAttribute("data-id", "Stream/" + stream.StreamId);
    var named = document.createElement("span");
    named.className = "fit";
    named.textContent = visible(stream.Name || stream.StreamId);
    cell(row).appendChild(named);
    var model = cell(row);
    if (stream.ModelReadable) {
      var link = document.createElement("a");
      var name = (names || {})["models/" + stream.MLModelId];
      link.href = base + "models/" + encodeURIComponent(stream.MLModelId);
      link.textContent = visible(name || stream.MLModelId);
      model.appendChild(link);
      if (name) {
        var id = document.createElement("code");
        id.textContent = stream.MLModelId;
        model.appendChild(document.createTextNode(" "));
        model.appendChild(id);
      }
    } else {
      var code = document.createElement("code");
      code.textContent = stream.MLModelId;
      var note = document.createElement("small");
      note.className = "unreadable";
      note.textContent = "(you may not open it)";
      model.appendChild(code);
      model.appendChild(document.createTextNode(" "));
      model.appendChild(note);
    }
    var input = cell(row);
    input.className = "path";
    input.textContent = stream.InputStream || "";
    cell(row, "Status");
    // Consumers and shards share a column, as the template writes them.
    var counts = cell(row);
    ["Consumers", "Shards"].forEach(function (field, index) {
      var count = document.createElement("span");
      count.setAttribute("data-field", field);
      if (index) counts.appendChild(document.createTextNode(" / "));
      counts.appendChild(count);
    });
    ["Records", "RecordsPerSecond", "Lag"].forEach(function (field) { cell(row, field); });
    cell(row, "Message").className = "prose";
    cell(row, "Start");
    return row;
  }

  // The streams table follows the twin as the jobs table does: rows update, streams created since the
  // page loaded appear in the twin's order and streams deleted go; a row stays in place when the order
  // did not change, so a start form being filled in keeps its focus.
  function updateStreams(table, streams, names) {
    followRows(table.tBodies[0], streams, function (stream) { return "Stream/" + stream.StreamId; },
      function (stream) { return streamRow(table.getAttribute("data-base"), stream, names); },
      function (row, stream) { fillStream(table, row, stream); }, 10, "No stream consumers.");
  }

  // Makes a table body's rows follow ``items`` in their order: each item's row (data-id ``key(item)``,
  // made by ``build`` when missing) filled by ``fill``; rows of items no longer listed go, and an empty
  // list gets one row saying ``emptyText``. Rows move only when the order changed, so focus stays.
  function followRows(body, items, key, build, fill, columns, emptyText) {
    var cursor = body.firstElementChild;
    items.forEach(function (item) {
      var row = body.querySelector('tr[data-id="' + CSS.escape(key(item)) + '"]') || build(item);
      fill(row, item);
      if (row === cursor) cursor = cursor.nextElementSibling;
      else body.insertBefore(row, cursor);
    });
    while (cursor) {
      var stale = cursor;
      cursor = cursor.nextElementSibling;
      if (items.length || stale.hasAttribute("data-id")) body.removeChild(stale);
    }
    if (!body.firstElementChild) {
      var empty = document.createElement("tr");
      var td = cell(empty);
      td.colSpan = columns;
      td.textContent = emptyText;
      body.appendChild(empty);
    }
  }

  // The jobs table follows its JSON twin every two seconds: rows update, jobs created since the page
  // loaded appear in their place (newest first) and jobs no longer listed go. Rows are moved only when
  // the order changed, so a focused link keeps its focus.
  function liveJobs(table, streams) {
    function update(jobs) {
      followRows(table.tBodies[0], jobs, function (job) { return job.Kind + "/" + job.Id; },
        function (job) { return jobRow(table, job); }, fill, 10, "No jobs.");
    }
    function refresh() {
      var url = new URL(window.location.href);
      url.searchParams.set("format", "json");
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data) return;
          update(data.Jobs);
          if (streams && Array.isArray(data.Streams)) updateStreams(streams, data.Streams, data.ReferenceNames);
        })
        .catch(function () {})
        .finally(function () { window.setTimeout(refresh, 2000); });
    }
    window.setTimeout(refresh, 2000);
  }

  var RUNNING = { PENDING: true, INPROGRESS: true };

  // The object a live element shows, in its page's JSON twin: the twin's entry named by data-key (a dotted
  // path into nested entries: the home page's "Recent.DataSource"), or in the list it names, the item whose
  // data-id-field is data-id.
  function liveObject(data, node) {
    var entry = node.getAttribute("data-key").split(".").reduce(function (found, key) {
      return found && found[key];
    }, data);
    var field = node.getAttribute("data-id-field");
    if (!field) return entry;
    var id = node.getAttribute("data-id");
    return (entry || []).filter(function (item) { return item[field] === id; })[0];
  }

  // A status as the template's status macro shows it: the status, and the progress while in progress.
  function showStatus(node, item) {
    node.setAttribute("data-status", item.Status);
    var label = node.querySelector(".status");
    label.className = "status status-" + String(item.Status || "").toLowerCase();
    label.textContent = item.Status;
    var progress = node.querySelector("progress");
    if (item.Status === "INPROGRESS" && typeof item.Progress === "number") {
      if (!progress) {
        progress = document.createElement("progress");
        progress.max = 100;
        progress.setAttribute("aria-label", "progress");
        label.parentNode.insertBefore(progress, label.nextSibling);
        label.parentNode.insertBefore(document.createTextNode(" "), progress);
      }
      progress.value = item.Progress;
      progress.textContent = item.Progress + " %";
    } else if (progress) {
      progress.parentNode.removeChild(progress);
    }
  }

  // A detail page whose object (or one it lists) is still running follows its JSON twin every two
  // seconds, updating each status and progress in place (focus, scroll and what is being typed stay);
  // once all have ended, or the list gained an object, it reloads once to show what their end brought.
  function liveObjects() {
    var nodes = document.querySelectorAll('[data-live="object"]');
    var running = Array.prototype.some.call(nodes, function (node) { return RUNNING[node.getAttribute("data-status")]; });
    if (!running) return;
    function update(data) {
      var ended = true;
      var changed = false;
      Array.prototype.forEach.call(nodes, function (node) {
        var item = liveObject(data, node);
        if (!item) return;
        if (item.Status !== node.getAttribute("data-status")) changed = true;
        showStatus(node, item);
        if (RUNNING[item.Status]) ended = false;
      });
      var grown = Array.prototype.some.call(document.querySelectorAll("[data-live-list]"), function (list) {
        var listed = data[list.getAttribute("data-live-list")];
        return Array.isArray(listed) && listed.length > list.querySelectorAll('[data-live="object"]').length;
      });
      if ((ended && changed) || grown) window.location.reload();
      return ended;
    }
    function refresh() {
      var url = new URL(window.location.href);
      url.searchParams.set("format", "json");
      var ended = false;
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data) ended = update(data); })
        .catch(function () {})
        .finally(function () { if (!ended) window.setTimeout(refresh, 2000); });
    }
    window.setTimeout(refresh, 2000);
  }

  // An irreversible change (deleting a file, a user, an access key, a group) asks first, in its button's
  // data-confirm: a slip of Enter or of a click would otherwise lose it. Without scripts it is sent as is.
  document.addEventListener("submit", function (event) {
    var question = event.submitter && event.submitter.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // A value to copy (a share link, shown once) is selected whole when focused, as it is on arrival
  // (autofocus): one keystroke copies it, where a long one in a narrow box would need selecting by hand.
  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("input[data-select]")) event.target.select();
  });

  // The evaluation form marks the datasources that cannot evaluate the chosen model (no target, or another
  // one) as the page marked them for the model it was shown with, in the words its select holds; the one
  // chosen stays choosable, and sending the form says why it is refused.
  function usableSources(models, sources) {
    var targets = JSON.parse(sources.getAttribute("data-predicts"));
    function mark() {
      var predicts = Object.prototype.hasOwnProperty.call(targets, models.value) ? targets[models.value] : null;
      Array.prototype.forEach.call(sources.options, function (option) {
        var target = option.getAttribute("data-target");
        if (target === null) return;
        var why = !predicts || target === predicts ? ""
          : !target ? sources.getAttribute("data-none")
          : sources.getAttribute("data-other").replace("{target}", function () { return target; })
            .replace("{predicts}", function () { return predicts; });
        option.textContent = option.getAttribute("data-label") + (why ? " — " + why : "");
        option.disabled = Boolean(why) && !option.selected;
      });
    }
    models.addEventListener("change", mark);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var focused = document.activeElement;
    if (focused && focused.matches("input[data-select]")) focused.select();
    liveObjects();
    var jobs = document.querySelector('[data-live="jobs"]');
    if (jobs) liveJobs(jobs, document.querySelector('[data-live="streams"]'));
    var sources = document.querySelector("select[data-usable-for]");
    if (sources) usableSources(document.getElementById(sources.getAttribute("data-usable-for")), sources);
  });
})();
