"""Thin Celery tasks: take an id, hand it to the runtime, which loads, runs the engine and stores."""

from __future__ import annotations

from faithaudit.api_schemas import DELIVER_CALLBACK_TASK, RUN_AUDIT_TASK, RUN_JOB_TASK, RUN_SHARD_TASK
from faithaudit.workers.celery_app import get_celery

celery = get_celery()


@celery.task(name=RUN_AUDIT_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_audit_task(audit_id: str) -> str:
    from faithaudit.workers.runtime import execute_audit

    return execute_audit(audit_id)


@celery.task(name=RUN_SHARD_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_shard_task(audit_id: str, idx: int) -> str:
    from faithaudit.workers.sharding import execute_shard

    return execute_shard(audit_id, idx)


@celery.task(name=RUN_JOB_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job_task(job_id: str) -> str:
    from faithaudit.workers.runtime import execute_job

    return execute_job(job_id)


@celery.task(name=DELIVER_CALLBACK_TASK, bind=True, acks_late=True, ignore_result=True, max_retries=None)
def deliver_callback_task(self, audit_id: str) -> str:
    """POST the ended audit to its callback_url; retried with doubling delays (``webhooks.retry_delay``)."""
    from faithaudit.workers.runtime import deliver_callback

    outcome, delay = deliver_callback(audit_id, attempt=self.request.retries + 1)
    if delay is not None:
        raise self.retry(countdown=delay)
    return outcome
