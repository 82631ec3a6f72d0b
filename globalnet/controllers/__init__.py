"""Globalnet's controllers: API objects in, global IP allocations and status out.

Each controller owns one kind of object and runs only while its process leads
(`manager.py`). They allocate from one shared `OwnedPool`, write status
conditions with upstream's reasons, and never call the datapath: each term's
intent publisher (`publisher.py`) derives the NAT intent from the same informer
caches (`intent_builder.py`) and hands it to the `Datapath` protocol; the agent
picks the backend.
"""
