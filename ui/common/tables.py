"""What every big table of the console shares: uniform rows, no grid, and following the tail."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView


def configure_table(view: QTableView) -> None:
    """Row selection, alternating colours, fixed row heights (Qt then never asks each row its
    size, which matters at a million rows), no grid, interactive columns."""
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setAlternatingRowColors(True)
    view.setWordWrap(False)
    view.setShowGrid(False)
    view.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
    vh = view.verticalHeader()
    vh.setVisible(False)
    vh.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
    vh.setDefaultSectionSize(view.fontMetrics().height() + 6)
    hh = view.horizontalHeader()
    hh.setHighlightSections(False)
    hh.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)


class FollowingTableView(QTableView):
    """Follows new rows only while the user is at the bottom; scrolling up holds the view still,
    also when rows are inserted above the ones in view (older rows of a replayed history, older
    search matches)."""

    def __init__(self, model, parent=None) -> None:
        super().__init__(parent)
        self.setModel(model)
        configure_table(self)
        self._follow = True
        model.rowsAboutToBeInserted.connect(self._remember_position)
        model.rowsInserted.connect(self._follow_tail)

    def at_bottom(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 1

    def _remember_position(self, *args) -> None:
        self._follow = self.at_bottom()

    def _follow_tail(self, parent, first: int, last: int) -> None:
        if self._follow:
            self.scrollToBottom()
            return
        bar = self.verticalScrollBar()
        if self.verticalScrollMode() == QAbstractItemView.ScrollMode.ScrollPerItem and first <= bar.value():
            value = bar.value() + last - first + 1
            self.updateGeometries()  # the scroll bar's range takes the new rows now, not at the next layout
            bar.setValue(value)  # the rows in view stay in view
