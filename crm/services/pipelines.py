"""Pipelines and stages: configured in the settings file, mirrored into the database."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmConfig
from crm.errors import InvalidInput
from crm.models import Pipeline, Stage


async def sync_pipelines(session: AsyncSession, config: CrmConfig) -> None:
    """Create or update the configured pipelines and stages (never deletes: deals point there)."""
    for p_sort, pdef in enumerate(config.pipelines):
        pipeline = await session.scalar(select(Pipeline).where(Pipeline.code == pdef.code))
        if pipeline is None:
            pipeline = Pipeline(code=pdef.code, name=pdef.name)
            session.add(pipeline)
            await session.flush()
        pipeline.name = pdef.name
        pipeline.sort = p_sort
        pipeline.is_default = p_sort == 0
        existing = {
            s.code: s
            for s in await session.scalars(select(Stage).where(Stage.pipeline_id == pipeline.id))
        }
        for s_sort, sdef in enumerate(pdef.stages):
            stage = existing.get(sdef.code)
            if stage is None:
                stage = Stage(pipeline_id=pipeline.id, code=sdef.code)
                session.add(stage)
            stage.name = sdef.name
            stage.semantic = sdef.semantic
            stage.sort = s_sort
    await session.flush()


async def pipeline_by_code(session: AsyncSession, code: str | None) -> Pipeline:
    query = select(Pipeline)
    query = (
        query.where(Pipeline.code == code)
        if code
        else query.order_by(Pipeline.is_default.desc(), Pipeline.sort)
    )
    pipeline = (await session.scalars(query.limit(1))).first()
    if pipeline is None:
        raise InvalidInput(f"unknown pipeline {code!r}" if code else "no pipeline configured")
    return pipeline


async def stage_by_code(session: AsyncSession, pipeline: Pipeline, code: str | None) -> Stage:
    query = select(Stage).where(Stage.pipeline_id == pipeline.id)
    query = query.where(Stage.code == code) if code else query.order_by(Stage.sort)
    stage = (await session.scalars(query.limit(1))).first()
    if stage is None:
        raise InvalidInput(f"pipeline {pipeline.code!r} has no stage {code!r}")
    return stage


async def first_stage_with(session: AsyncSession, pipeline_id: int, semantic: str) -> Stage:
    stage = (
        await session.scalars(
            select(Stage)
            .where(Stage.pipeline_id == pipeline_id, Stage.semantic == semantic)
            .order_by(Stage.sort)
            .limit(1)
        )
    ).first()
    if stage is None:
        raise InvalidInput(f"the pipeline has no {semantic} stage")
    return stage
