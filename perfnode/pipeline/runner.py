"""The pipeline supervisor: series completion → durable jobs → analysis processes → archive → destinations.

It runs as a background service of the node (:func:`start_pipeline`, called by :mod:`perfnode.node`).
Analysis runs in separate worker processes (``spawn``), so fitting never holds the GIL of the network threads.
Every hand-over
is a committed row or file: a node killed at any point re-queues its running jobs at start-up,
re-runs them with the same deterministic output UIDs, keeps the outputs already archived, and
sends each output to each destination once (the sent-log).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from pydicom import dcmread

from perfnode import techniques
from perfnode.archive.facade import Archive, Job, JobState, Stored
from perfnode.config import PipelineSettings, Settings
from perfnode.pipeline.deliver import deliver, integer_variants, request_commitment
from perfnode.pipeline.technique import choose

log = logging.getLogger("perfnode.pipeline")

def exit_with_parent(parent_pid: int, every_s: float = 1.0) -> None:
    """Worker initializer: end the worker when the node is gone (a pool's workers outlive a SIGKILL)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class Supervisor:
    """Polls the index for complete series and runs their jobs; one per node."""

    def __init__(self, archive: Archive, settings: Settings, cfg: PipelineSettings) -> None:
        self.archive = archive
        self.settings = settings
        self.cfg = cfg
        self.stopping = threading.Event()
        self.processes = ProcessPoolExecutor(max_workers=cfg.workers,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=exit_with_parent, initargs=(os.getpid(),))
        self.analysing = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="perfnode-job")
        self.delivering = ThreadPoolExecutor(max_workers=4, thread_name_prefix="perfnode-deliver")
        self.running: dict[int, Future] = {}
        #: Series held back until their study is quiet: series UID → (technique, calling AE), so the
        #: header is read once, not at every poll.
        self.waiting: dict[str, tuple[str, str]] = {}
        #: How each series' technique was decided (said in its job's note and report).
        self.decisions: dict[str, str] = {}
        self.thread = threading.Thread(target=self._loop, name="perfnode-pipeline", daemon=True)

    def start(self) -> Callable[[], None]:
        n = self.archive.jobs.requeue_interrupted()
        if n:
            log.info("resuming %d job(s) interrupted by a previous stop", n)
        self.thread.start()
        return self.stop

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        self.analysing.shutdown(wait=False, cancel_futures=True)
        self.delivering.shutdown(wait=False, cancel_futures=True)
        self.processes.shutdown(wait=False, cancel_futures=True)

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self._enqueue_ready()
                self._start_jobs()
            except Exception:  # the loop must outlive any one bad series
                log.exception("pipeline loop error")
            self.stopping.wait(self.cfg.poll_s)

    def _enqueue_ready(self) -> None:
        archive, jobs = self.archive, self.archive.jobs
        waited, self.waiting = self.waiting, {}
        for series_uid, reason in archive.ready_series(self.cfg.stable_s):
            if series_uid in waited:
                technique, calling_ae = waited[series_uid]
            else:
                files, calling_ae = archive.series_files(series_uid)
                if not files:
                    continue
                try:  # every instance of the series, never its first file alone
                    headers = [dcmread(f, stop_before_pixels=True) for f in files]
                    decision = choose(headers, calling_ae, self.cfg.rules)
                except Exception as exc:  # unreadable header or bad rule: record, do not retry forever
                    technique, why = None, f"cannot choose an analysis: {exc}"
                else:
                    technique, why = decision.technique, decision.reason
                    self.decisions[series_uid] = decision.reason
                if technique is None:
                    job = jobs.create(series_uid, "none", calling_ae)
                    if job:
                        jobs.finish(job.id, JobState.SKIPPED, why)
                    continue
            quiet = archive.study_quiet(series_uid, self.cfg.stable_s)
            if techniques.get(technique).companions and not quiet:
                # its M0 / T1 series may still be on the way: wait until the study is quiet
                self.waiting[series_uid] = (technique, calling_ae)
                continue
            dests = self.cfg.destinations_for(calling_ae, self.settings)
            job = jobs.create(series_uid, technique, calling_ae, dests)
            if job:
                log.info("job %d: %s analysis of series %s queued (%s; %s)", job.id, technique, series_uid,
                         reason, self.decisions.get(series_uid, ""))

    def _start_jobs(self) -> None:
        for job_id, fut in list(self.running.items()):
            if fut.done():
                del self.running[job_id]
        while len(self.running) < self.cfg.workers and not self.stopping.is_set():
            job = self.archive.jobs.claim_next()
            if job is None:
                return
            self.running[job.id] = self.analysing.submit(self._run_job, job)

    def _run_job(self, job: Job) -> None:
        from perfnode.pipeline.analysis import AnalysisRequest, analyse  # heavy: numpy/scipy/highdicom

        archive = self.archive
        try:
            files, _ = archive.series_files(job.series_instance_uid)
            companions = archive.study_companion_files(job.series_instance_uid)
            out_dir = Path("jobs") / f"{job.id:06d}"
            request = AnalysisRequest(
                files=[str(f) for f in files], technique=job.analysis,
                out_dir=str(archive.path(str(out_dir))),
                uid_seed=f"{job.series_instance_uid}/{job.analysis}", colour=self.cfg.colour,
                companions=[str(f) for f in companions],
                decision=self.decisions.pop(job.series_instance_uid, None),
                protocols=str(self.settings.qc.protocols) if self.settings.qc.protocols else None)
            t0 = time.monotonic()
            outcome = self.processes.submit(analyse, request, None, job.series_instance_uid).result()
            if outcome.status != "written" or outcome.result is None:
                log.warning("job %d: %s", job.id, outcome.line())
                state = JobState.REFUSED if outcome.status == "refused" else JobState.FAILED
                archive.jobs.finish(job.id, state, outcome.reason)
                return
            result = outcome.result
            log.info("job %d: analysis done in %.1f s, %d output object(s); timings %s", job.id,
                     time.monotonic() - t0, len(result.files),
                     json.dumps({k: round(v, 3) for k, v in result.timings_s.items()}))
            archived = [archive.store_file(f, self.settings.ae_title) for f in result.files]
            archive.jobs.set_fields(job.id, output_series_uid=result.series_uid, output_dir=str(out_dir))
        except Exception as exc:
            log.exception("job %d failed", job.id)
            archive.jobs.finish(job.id, JobState.FAILED, f"{type(exc).__name__}: {exc}")
            return
        if not result.reliable and self.cfg.on_quality_failure == "hold":
            log.warning("job %d: maps held (archived, not sent): %s", job.id, result.verdict)
            archive.jobs.finish(job.id, JobState.HELD, f"maps held, {result.verdict}")
            return
        if not result.reliable:
            log.warning("job %d: sending maps flagged as %s", job.id, result.verdict)
        self.delivering.submit(self._deliver_job, job, archived, "; ".join(result.notes))

    def _deliver_job(self, job: Job, archived: list[Stored], note: str = "") -> None:
        """Send the archived outputs to every destination (retrying), then mark the job done."""
        dests = [d for d in job.destinations.split(",") if d]
        try:
            for dest in dests:
                outputs = archived
                if self.settings.peer(dest).integer_maps:  # 16-bit copies of the float maps
                    outputs = integer_variants(self.archive, self.settings.ae_title, job.id, archived)
                deliver(self.archive, self.settings, job.id, dest, outputs, self.cfg, self.stopping)
                if self.cfg.commit:
                    request_commitment(self.archive, self.settings, job.id, dest, outputs, self.cfg,
                                       self.stopping)
        except Exception as exc:
            log.error("job %d: delivery failed: %s", job.id, exc)
            self.archive.jobs.finish(job.id, JobState.FAILED, f"delivery: {exc}")
            return
        if self.stopping.is_set():
            return  # left running: re-queued and finished at the next start
        self.archive.jobs.finish(job.id, JobState.DONE, note)
        log.info("job %d: done (sent to %s)", job.id, ", ".join(dests) or "no destination")


def start_pipeline(archive: Archive, settings: Settings) -> Callable[[], None] | None:
    """Start the supervisor when ``[pipeline] enabled``; returns its stop function (or ``None``)."""
    cfg = settings.pipeline
    if not cfg.enabled:
        return None
    return Supervisor(archive, settings, cfg).start()

