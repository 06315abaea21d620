"""Pieces several pages draw (not pages themselves: app.py routes only the files directly in pages/)."""
