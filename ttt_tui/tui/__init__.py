"""The live terminal dashboard (Textual + textual-plotext). It only reads the store and the engine status."""
