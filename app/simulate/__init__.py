"""Simulated platform traffic: one module per platform (tts, tektelic, akenza, thingpark, drogue),
each writing that platform's exact messages on its own topics, all driven by one fleet model
(fleet.py) so devices drift, skip frames, reset and rejoin the same way on every platform.
"""
