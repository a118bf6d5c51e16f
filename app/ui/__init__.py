"""Qt widgets, dialogs and the main window."""
