// The console's progressive parts: page data, live job tables. Pages work without it.
"use strict";
(function () {
  function pageData() {
    var node = document.getElementById("page-data");
    try { return node ? JSON.parse(node.textContent) : {}; } catch (e) { return {}; }
  }
  window.emrmlPageData = pageData;

  function fmtTime(epoch) {
    if (typeof epoch !== "number") return "";
    return new Date(epoch * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  // The jobs table refreshes from its JSON twin every two seconds.
  function liveJobs(table) {
    function refresh() {
      var url = new URL(window.location.href);
      url.searchParams.set("format", "json");
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data) return;
          data.Jobs.forEach(function (job) {
            var row = table.querySelector('tr[data-id="' + CSS.escape(job.Kind + "/" + job.Id) + '"]');
            if (!row) return;
            var progress = row.querySelector('[data-field="Progress"]');
            progress.value = job.Progress || 0;
            progress.textContent = (job.Progress || 0) + " %";
            row.querySelector('[data-field="ProgressText"]').textContent = Math.round(job.Progress || 0) + " %";
            row.querySelector('[data-field="Status"]').textContent = job.Status;
            row.querySelector('[data-field="StartedAt"]').textContent = fmtTime(job.StartedAt);
            row.querySelector('[data-field="FinishedAt"]').textContent = fmtTime(job.FinishedAt);
            row.querySelector('[data-field="Message"]').textContent = job.Message || "";
            var ids = job.SparkJobIds || [];
            row.querySelector('[data-field="RanOn"]').textContent = job.SparkApplicationId
              ? "Spark application " + job.SparkApplicationId + ", " + (ids.length === 1 ? "job " : "jobs ") + ids.join(", ")
              : "";
          });
        })
        .catch(function () {})
        .finally(function () { window.setTimeout(refresh, 2000); });
    }
    window.setTimeout(refresh, 2000);
  }

  // A detail page whose object (or one it lists) is still running reloads itself until all have ended.
  function reloadWhileRunning() {
    var running = document.querySelector('[data-live="object"][data-status="PENDING"], [data-live="object"][data-status="INPROGRESS"]');
    if (running) window.setTimeout(function () { window.location.reload(); }, 3000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    reloadWhileRunning();
    var jobs = document.querySelector('[data-live="jobs"]');
    if (jobs) liveJobs(jobs);
  });
})();
