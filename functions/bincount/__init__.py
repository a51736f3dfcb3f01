"""Bin Count's Lambda code, shared by the four handlers: pure domain rules, the services the handlers
call, and ``adapters/`` (the boto3 glue behind the Protocols in ``ports``). Each module's docstring
says what it holds; docs/ARCHITECTURE.md has the folders and the contracts.
"""
