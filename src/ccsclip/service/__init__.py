"""The serving transports (docs/design.md §8): BentoML HTTP and grpcio over one engine.

Both share one schema set and one endpoint table.

Nothing under this package imports torch or open_clip (a test checks `sys.modules` in a fresh
interpreter): the serving image ships without them.
"""
