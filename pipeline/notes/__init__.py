"""Meeting notes from a transcript: decisions, action items and open questions, each citing its lines."""
from pipeline.notes.dates import Due, find_due
from pipeline.notes.extract import ActionItem, Decision, Notes, OpenQuestion, Said, extract_notes
from pipeline.notes.people import People

__all__ = ["ActionItem", "Decision", "Due", "Notes", "OpenQuestion", "People", "Said", "extract_notes", "find_due"]
