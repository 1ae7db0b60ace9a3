"""The job queue client as a route dependency, set up by the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from src.jobs.client import JobClient


def get_jobs(request: Request) -> JobClient:
    """This worker process's client of the job queue."""
    jobs: JobClient = request.app.state.jobs
    return jobs


JobsDep = Annotated[JobClient, Depends(get_jobs)]
