"""Thin Celery tasks: take an id, hand it to the runtime, which loads, runs the engine and stores."""

from __future__ import annotations

from faithaudit.api_schemas import RUN_AUDIT_TASK, RUN_JOB_TASK
from faithaudit.workers.celery_app import get_celery

celery = get_celery()


@celery.task(name=RUN_AUDIT_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_audit_task(audit_id: str) -> str:
    from faithaudit.workers.runtime import execute_audit

    return execute_audit(audit_id)


@celery.task(name=RUN_JOB_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job_task(job_id: str) -> str:
    from faithaudit.workers.runtime import execute_job

    return execute_job(job_id)
