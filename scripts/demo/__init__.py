"""The demo model: task generator, trainer and evaluation (development scripts, not installed).

Lives outside the installed package on purpose: generating training data needs the tools and the harmony
layer, while the shipped checkpoint lives with ``model`` (which must not import agent/tools).
"""
