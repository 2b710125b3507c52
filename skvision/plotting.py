"""Plots of images and training histories (matplotlib)."""

import numpy as np
import pandas as pd

from ._validation import LUMA

__all__ = [
    "plot_activation_maps",
    "plot_boxes",
    "plot_feature_mask",
    "plot_history",
    "plot_images",
    "plot_masks",
]


def _as_display_images(images):
    """``(n, h, w)``, ``(n, h, w, c)`` or ``(n, c, h, w)`` tensors → displayable arrays."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
        if images.ndim == 4:
            images = images.transpose(0, 2, 3, 1)
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4):
        raise ValueError(
            f"Expected images of shape (n, h, w) or (n, h, w, c); got shape {images.shape}."
        )
    return images


def plot_images(images, titles=None, *, n_cols=8, cmap="gray", ax_size=1.5, fig=None):
    """Show images in a grid, optionally with a title each.

    Parameters
    ----------
    images : array-like of shape (n, h, w) or (n, h, w, c), or a torch tensor (n, c, h, w)
        The images; float images are shown on their own range.
    titles : list of str, default=None
        One title per image.
    n_cols : int, default=8
        Images per row.
    cmap : str, default="gray"
        Colour map of grayscale images.
    ax_size : float, default=1.5
        Size in inches of each image.
    fig : matplotlib Figure, default=None
        Figure to draw into; a new one by default.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skvision.datasets import load_digit_images
    >>> from skvision.plotting import plot_images
    >>> X, y = load_digit_images(return_X_y=True)
    >>> fig = plot_images(X[:4], titles=[str(label) for label in y[:4]])
    >>> len(fig.axes)
    4
    """
    images = _as_display_images(images)
    fig, axes = _image_grid(len(images), titles, n_cols, ax_size, fig)
    for ax, image in zip(axes, images):
        ax.imshow(image, cmap=cmap if image.ndim == 2 else None)
    fig.tight_layout()
    return fig


def _image_grid(n_images, titles, n_cols, ax_size, fig):
    """A figure with one titled, axis-free subplot per image."""
    import matplotlib.pyplot as plt

    if titles is not None and len(titles) != n_images:
        raise ValueError(f"Got {len(titles)} titles for {n_images} images.")
    n_cols = max(1, min(n_cols, n_images))
    n_rows = -(-n_images // n_cols)
    if fig is None:
        fig = plt.figure(figsize=(n_cols * ax_size, n_rows * (ax_size + 0.3)))
    axes = []
    for index in range(n_images):
        ax = fig.add_subplot(n_rows, n_cols, index + 1)
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[index], fontsize=8)
        axes.append(ax)
    return fig, axes


def plot_history(history, *, metrics=("loss", "acc"), fig=None):
    """Plot training curves: losses and accuracies per epoch (or iteration).

    Parameters
    ----------
    history : pandas.DataFrame or fitted estimator
        An estimator's ``history_`` or ``loss_history_`` (StyleTransfer), or
        the estimator itself.
    metrics : tuple of str, default=("loss", "acc")
        Suffixes of the columns to plot, one panel each (``train_`` and
        ``valid_`` columns share a panel). A panel whose curves span more
        than two orders of magnitude gets a log scale.
    fig : matplotlib Figure, default=None
        Figure to draw into; a new one by default.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import pandas as pd
    >>> from skvision.plotting import plot_history
    >>> history = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5]})
    >>> len(plot_history(history).axes)
    1
    """
    import matplotlib.pyplot as plt

    for attribute in ("history_", "loss_history_"):
        if hasattr(history, attribute):
            history = getattr(history, attribute)
            break
    x_column = next((c for c in ("epoch", "iteration") if c in getattr(history, "columns", [])),
                    None)
    if not isinstance(history, pd.DataFrame) or x_column is None:
        raise ValueError(
            "history must be a fitted estimator or its history_ / loss_history_ DataFrame."
        )
    panels = [
        (metric, [c for c in history.columns if c.endswith(f"_{metric}")])
        for metric in metrics
    ]
    panels = [(metric, columns) for metric, columns in panels if columns]
    if not panels:
        raise ValueError(
            f"history has no columns ending in {metrics}; got {list(history.columns)}.")
    if fig is None:
        fig = plt.figure(figsize=(4.5 * len(panels), 3.2))
    for index, (metric, columns) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), index + 1)
        marker = "o" if len(history) <= 50 else None
        for column in columns:
            ax.plot(history[x_column], history[column], marker=marker, label=column)
        values = history[columns].to_numpy(dtype=float)
        positive = values[np.isfinite(values) & (values > 0)]
        finite = values[np.isfinite(values)]
        if positive.size and (finite >= 0).all() and positive.max() > 100 * positive.min():
            ax.set_yscale("log")
        ax.set_xlabel(x_column)
        ax.set_ylabel(metric)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_activation_maps(images, maps, titles=None, *, alpha=0.5, cmap="jet", n_cols=6,
                         ax_size=2.0, fig=None):
    """Overlay per-pixel maps (CAMs, attention maps) on their images.

    Parameters
    ----------
    images : array-like of shape (n, h, w) or (n, h, w, c)
        The images.
    maps : array-like of shape (n, h, w)
        One map per image, e.g. from ``CNNClassifier.class_activation_maps``
        or ``VisionTransformerClassifier.attention_maps``; each is rescaled
        to [0, 1] for display.
    titles : list of str, default=None
        One title per image.
    alpha : float, default=0.5
        Opacity of the map over the image.
    cmap : str, default="jet"
        Colour map of the overlay.
    n_cols : int, default=6
        Images per row.
    ax_size : float, default=2.0
        Size in inches of each image.
    fig : matplotlib Figure, default=None
        Figure to draw into; a new one by default.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skvision.plotting import plot_activation_maps
    >>> fig = plot_activation_maps(np.zeros((2, 8, 8)), np.random.rand(2, 8, 8))
    >>> len(fig.axes)
    2
    """
    images = _as_display_images(images)
    maps = np.asarray(maps, dtype=float)
    if maps.shape != images.shape[:3]:
        raise ValueError(
            f"maps must have shape (n, h, w) = {images.shape[:3]} to match the images; "
            f"got {maps.shape}."
        )
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    maps = (maps - low) / np.where(high > low, high - low, 1)
    fig, axes = _image_grid(len(images), titles, n_cols, ax_size, fig)
    for ax, image, heat in zip(axes, images, maps):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.imshow(heat, cmap=cmap, alpha=alpha)
    fig.tight_layout()
    return fig


def plot_feature_mask(selector_or_mask, image_shape, *, image=None, ax=None, cmap="viridis"):
    """Show which pixels a feature selector kept, as an image.

    The mask is laid out in :class:`~skvision.preprocessing.ImageFlattener`'s
    pixel order (``px_r{row}_c{col}_ch{channel}``), so a selector fitted
    after an ImageFlattener maps back onto the image; for several channels,
    each pixel shows the share of its channels that were kept.

    Parameters
    ----------
    selector_or_mask : fitted selector or array-like of shape (n_features,)
        An estimator with ``get_support()`` (``SelectKBest``,
        ``SelectFromModel``, ``RFE``, ...) or a boolean/0-1 mask.
    image_shape : tuple of int
        ``(height, width)`` or ``(height, width, channels)`` of the images
        that were flattened.
    image : array-like of shape (height, width) or (height, width, c), default=None
        An example image drawn under the mask, in gray.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure by default.
    cmap : str, default="viridis"
        Colour map of the mask.

    Returns
    -------
    ax : matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skvision.plotting import plot_feature_mask
    >>> ax = plot_feature_mask(np.arange(64) % 2 == 0, (8, 8))
    >>> ax.images[0].get_array().shape
    (8, 8)
    """
    import matplotlib.pyplot as plt

    if hasattr(selector_or_mask, "get_support"):
        mask = selector_or_mask.get_support()
    else:
        mask = selector_or_mask
    mask = np.asarray(mask, dtype=float).ravel()
    shape = tuple(int(side) for side in image_shape)
    if len(shape) == 2:
        shape = shape + (1,)
    if len(shape) != 3 or mask.size != np.prod(shape):
        raise ValueError(
            f"The mask has {mask.size} entries, but image_shape={tuple(image_shape)} holds "
            f"{np.prod(shape)} pixel values; pass the (height, width[, channels]) of the "
            "flattened images."
        )
    kept = mask.reshape(shape).mean(axis=2)
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    if image is not None:
        image = np.asarray(image, dtype=float)
        gray = image.mean(axis=2) if image.ndim == 3 else image
        ax.imshow(gray, cmap="gray")
        ax.imshow(np.ma.masked_equal(kept, 0), cmap=cmap, alpha=0.6, vmin=0, vmax=1)
    else:
        ax.imshow(kept, cmap=cmap, vmin=0, vmax=1)
    ax.set_title(f"{int(mask.sum())} of {mask.size} features kept", fontsize=9)
    ax.set_axis_off()
    return ax


def plot_masks(images, masks, predicted=None, *, class_names=None, background=0, alpha=0.5,
               gray_images=True, n_cols=4, ax_size=2.0, fig=None):
    """Overlay segmentation masks on their images, with a legend of the classes.

    Parameters
    ----------
    images : array-like of shape (n, h, w) or (n, h, w, c)
        The images.
    masks : array-like of int, shape (n, h, w)
        True (or any) class of each pixel.
    predicted : array-like of int, shape (n, h, w), default=None
        Predicted masks, drawn next to ``masks`` ("true" / "predicted").
    class_names : dict, default=None
        Display name of each mask value, e.g. ``{1: "circle"}``.
    background : int or None, default=0
        Mask value left uncoloured; None colours every class.
    alpha : float, default=0.5
        Opacity of the class colours.
    gray_images : bool, default=True
        Draw colour images in grayscale under the masks, so that the class
        colours of the legend are the only colours (on colourful images the
        tints are otherwise hard to tell from the picture).
    n_cols : int, default=4
        Panels per row.
    ax_size : float, default=2.0
        Size in inches of each panel.
    fig : matplotlib Figure, default=None
        Figure to draw into; a new one by default.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skvision.datasets import make_shapes
    >>> from skvision.plotting import plot_masks
    >>> X, masks = make_shapes(n_samples=2, image_size=32, task="segmentation",
    ...                        random_state=0)
    >>> fig = plot_masks(X, masks, masks)
    >>> len(fig.axes)
    4
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    images = _as_display_images(images)
    if gray_images and images.ndim == 4:
        images = images @ LUMA
    panels = [np.asarray(masks)] + ([] if predicted is None else [np.asarray(predicted)])
    for name, panel in zip(("masks", "predicted"), panels):
        if panel.shape != images.shape[:3]:
            raise ValueError(
                f"{name} must have shape (n, h, w) = {images.shape[:3]} to match the "
                f"images; got {panel.shape}."
            )
    labels = np.unique(np.concatenate([panel.ravel() for panel in panels]))
    shown = [label for label in labels if label != background]
    palette = plt.get_cmap("tab10" if len(shown) <= 10 else "tab20")
    colors = {label: palette(i % palette.N) for i, label in enumerate(shown)}
    titles = None
    if predicted is not None:
        titles = [title for _ in images for title in ("true", "predicted")]
    fig, axes = _image_grid(len(images) * len(panels), titles, n_cols, ax_size, fig)
    for index, ax in enumerate(axes):
        image, panel = images[index // len(panels)], panels[index % len(panels)]
        mask = panel[index // len(panels)]
        overlay = np.zeros(mask.shape + (4,))
        for label, color in colors.items():
            overlay[mask == label] = (*color[:3], alpha)
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.imshow(overlay)
    names = class_names or {}
    fig.legend(handles=[Patch(color=color, label=str(names.get(label, label)))
                        for label, color in colors.items()],
               loc="lower center", ncol=min(len(colors), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def plot_boxes(images, y_true=None, y_pred=None, *, proposals=None, score_threshold=0.0,
               titles=None, n_cols=4, ax_size=2.5, fig=None):
    """Draw detection boxes on their images: true boxes, predictions, proposals.

    Parameters
    ----------
    images : array-like of shape (n, h, w) or (n, h, w, c)
        The images.
    y_true : list of dict, default=None
        True boxes per image: ``"boxes"`` (k, 4) xyxy in pixel corners (a
        box ``(0, 0, 2, 1)`` covers the first two pixels of the top row) and
        ``"labels"``; drawn as dashed white rectangles.
    y_pred : list of dict, default=None
        Detections per image: ``"boxes"``, ``"labels"`` and optionally
        ``"scores"``; drawn in one colour per class with "label score".
    proposals : list of array-like of shape (k, 4), default=None
        Extra boxes per image drawn thin and gray — anchors or a region
        proposal network's proposals, to make the RPN visible.
    score_threshold : float, default=0.0
        Detections scoring below it are not drawn.
    titles : list of str, default=None
        One title per image.
    n_cols : int, default=4
        Images per row.
    ax_size : float, default=2.5
        Size in inches of each image.
    fig : matplotlib Figure, default=None
        Figure to draw into; a new one by default.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skvision.datasets import make_shapes
    >>> from skvision.plotting import plot_boxes
    >>> X, targets = make_shapes(n_samples=2, image_size=64, task="detection",
    ...                          random_state=0)
    >>> fig = plot_boxes(X, y_true=targets)
    >>> len(fig.axes)
    2
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    images = _as_display_images(images)
    for name, value in (("y_true", y_true), ("y_pred", y_pred), ("proposals", proposals)):
        if value is not None and len(value) != len(images):
            raise ValueError(f"{name} has {len(value)} entries for {len(images)} images.")
    labels = sorted({str(label) for targets in (y_true, y_pred) if targets is not None
                     for target in targets for label in np.asarray(target["labels"]).ravel()})
    palette = plt.get_cmap("tab10")
    colors = {label: palette(index % 10) for index, label in enumerate(labels)}
    fig, axes = _image_grid(len(images), titles, n_cols, ax_size, fig)

    def draw(ax, box, **style):
        x1, y1, x2, y2 = (float(v) for v in box)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, **style))

    for index, (ax, image) in enumerate(zip(axes, images)):
        height, width = image.shape[:2]
        # imshow centres pixel (i, j) on (j, i) by default; box coordinates
        # are pixel corners (pixel j spans j..j+1), so the image spans 0..w.
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None,
                  extent=(0, width, height, 0))
        if proposals is not None:
            for box in np.asarray(proposals[index], dtype=float).reshape(-1, 4):
                draw(ax, box, edgecolor="0.7", linewidth=0.5, alpha=0.6)
        if y_true is not None:
            for box in np.asarray(y_true[index]["boxes"], dtype=float).reshape(-1, 4):
                draw(ax, box, edgecolor="white", linewidth=1.2, linestyle="--")
        if y_pred is not None:
            target = y_pred[index]
            boxes = np.asarray(target["boxes"], dtype=float).reshape(-1, 4)
            names = np.asarray(target["labels"]).ravel()
            scores = np.asarray(target.get("scores", np.ones(len(boxes))), dtype=float)
            for box, label, score in zip(boxes, names, scores):
                if score < score_threshold:
                    continue
                color = colors[str(label)]
                draw(ax, box, edgecolor=color, linewidth=1.5)
                text = f"{label} {score:.2f}" if "scores" in target else str(label)
                ax.text(box[0], box[1], text, color="white", fontsize=6, va="bottom",
                        bbox={"facecolor": color, "edgecolor": "none", "pad": 1})
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
    fig.tight_layout()
    return fig
