"""ESPnet-SpeechLM toolkit: speech language models as next-token prediction."""

__version__ = "0.1.0"
