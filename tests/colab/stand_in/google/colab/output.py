"""Stand-in for ``google.colab.output``: records calls of the widget-manager switches."""

custom_widget_manager_calls: list[str] = []


def enable_custom_widget_manager() -> None:
    """In Colab: render widgets with the custom manager (needed for ipywidgets 8 models)."""
    custom_widget_manager_calls.append("enable")


def disable_custom_widget_manager() -> None:
    custom_widget_manager_calls.append("disable")
