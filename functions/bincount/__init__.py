"""Bin Count's Lambda code shared by the batcher and the collector.

Pure domain modules (``uploads``, ``notifications``, ``batching``, ``serving_records``,
``job_events``, ``count_records``, ``inventory_events``) hold the rules; ``adapters/`` holds the
boto3 glue behind the Protocols in ``ports``; ``submission`` and ``collection`` are the two
services the handlers call.
"""
