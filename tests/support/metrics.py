"""Reading a figure from a process's Prometheus ``/metrics``, as an operator's scraper would."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


async def metric_sum(http: aiohttp.ClientSession, base_url: str, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` (with ``labels``) in ``base_url``'s /metrics."""
    async with http.get(base_url + "/metrics") as response:
        text = await response.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items())
    )
