"""Image preprocessing transformers: read, resize, gray, standardize, flatten.

They let sklearn's own scalers, selectors and linear models work on images:
:class:`ImageReader` turns file paths into arrays, :class:`Resize` and
:class:`Grayscale` bring images to one size and channel count,
:class:`ChannelStandardizer` is the image form of ``StandardScaler`` and
:class:`ImageFlattener` turns images into the 2-D feature matrix the
classical estimators take (and back, to show which pixels a selector kept).
Outputs keep the form of the input (flat rows stay flat, channels-last stays
channels-last) unless a step's purpose is to change it.
"""

import numbers
import os

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted

from ._data import decode_arrays
from ._docstrings import fill_docstring
from ._output import ImageOutputMixin
from ._params import (
    BOOLEAN,
    CHANNELS,
    IMAGE_SHAPE,
    InstanceOf,
    Options,
    image_size,
    validate_params,
)
from ._pixels import to_unit_batch
from ._validation import (
    LUMA,
    as_height_width,
    check_images,
    image_dtype,
    image_layout,
    images_as,
    images_like,
)
from .datasets import pixel_feature_names
from .nn._resize import resize_images

__all__ = ["ChannelStandardizer", "Grayscale", "ImageFlattener", "ImageReader", "Resize"]

_LUMA = torch.as_tensor(LUMA)
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")


_IMAGE_PARAMETERS_DOC = """\
image_shape : tuple of int, default=None
        ``(height, width)`` or ``(height, width, channels)`` of flat 2-D input
        rows; None infers a square grayscale or RGB image.

    channels : {"last", "first"}, default="last"
        Channel axis of 4-D numpy input."""

_IMAGE_ATTRIBUTES_DOC = """\
n_features_in_ : int
        Flat size of the input images.

    image_shape_ : tuple of int
        ``(height, width, channels)`` of the input images.

    feature_names_in_ : ndarray of str
        Column names of DataFrame input. Defined only then.

    input_dtype_ : str
        dtype of the images seen in ``fit`` (a tensor's as numpy's). What
        ``inverse_transform``, where there is one, gives back: uint8 and
        uint16 from the [0, 1] they were read as, other integers rounded
        and clipped.

    input_layout_ : str
        How those images were laid out: "flat" rows, "gray" ``(n, h, w)``,
        "channels_last", "channels_first" or "tensor". What
        ``ImageFlattener.inverse_transform`` gives back."""


_fill_image_doc = fill_docstring(image_parameters=_IMAGE_PARAMETERS_DOC,
                                 image_attributes=_IMAGE_ATTRIBUTES_DOC)


class _ImageTransformer(ImageOutputMixin, TransformerMixin, BaseEstimator):
    """Shared plumbing: ``image_shape``/``channels`` parameters and output names.

    The parameters are validated on every call that reads images (``fit`` and
    ``transform``), before the images.
    """

    _parameter_constraints = {"image_shape": IMAGE_SHAPE, "channels": CHANNELS}

    def _images(self, X, reset):
        validate_params(self)
        # float64 stays float64: these steps are exact (or nearly) on any data.
        images = check_images(X, estimator=self, reset=reset, image_shape=self.image_shape,
                              channels=self.channels, dtype=None)
        if reset:
            # What an inverse_transform gives back.
            self.input_dtype_ = image_dtype(X).name  # a str: saved as plain data
            self.input_layout_ = image_layout(X, self.channels)
        return images

    def _output_shape(self):
        """``(height, width, channels)`` of the transformed images."""
        return self.image_shape_

    def get_feature_names_out(self, input_features=None):
        """Names ``px_r{row}_c{col}_ch{channel}`` of the output pixels (flattened).

        Parameters
        ----------
        input_features : array-like of str, default=None
            Ignored apart from a length check; the output names describe
            the output pixels.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self, "image_shape_")
        if input_features is not None and len(input_features) != self.n_features_in_:
            raise ValueError(
                f"input_features has {len(input_features)} names, but X has "
                f"{self.n_features_in_} features."
            )
        return pixel_feature_names(self._output_shape())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class ImageReader(ImageOutputMixin, TransformerMixin, BaseEstimator):
    """Read image files into an array of images, with Pillow.

    The first step of a classical pipeline on image files: ``fit`` only
    checks the paths (it never reads the files, so ``fit_transform`` reads
    each file once); ``transform`` decodes them, on several threads, into
    one uint8 array. Paths may be URLs (``s3://``, ``gs://``,
    ``https://``, ... read through fsspec, all at once). For data larger
    than memory, give the paths to the neural estimators or the feature
    extractor directly instead: they decode batch by batch.

    Read more in the :ref:`User Guide <user-guide-image-files>`.

    Parameters
    ----------
    column : str or int, default=None
        The DataFrame column holding the paths; None takes the only column.

    mode : {"RGB", "L"} or None, default="RGB"
        The channels of every image: "RGB" gives ``(n, h, w, 3)``, "L"
        (grayscale, ITU-R 601-2 luma) gives ``(n, h, w)``. None decides by
        the files, as the estimators do: RGB if any file is colour, else gray.
        Alpha is dropped (an opaque RGBA file reads as its RGB file).

    image_size : int or (int, int), default=None
        Resize every image to ``(height, width)`` with the estimators'
        resize (bilinear with antialiasing, on float pixels). None requires
        all images to share one size.

    Attributes
    ----------
    n_features_in_ : int
        Columns of the input (1 for a list or Series of paths).

    feature_names_in_ : ndarray of str
        Column names of DataFrame input. Defined only then.

    See Also
    --------
    skvision.datasets.load_image_folder : Paths and labels of a
        ``root/class_name/*.png`` folder.
    Resize : Resize images already in memory.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from skvision.preprocessing import ImageReader
    >>> folder = tempfile.mkdtemp()
    >>> paths = [os.path.join(folder, f"{i}.png") for i in range(3)]
    >>> for path in paths:
    ...     Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path)
    >>> ImageReader().fit_transform(paths).shape
    (3, 20, 30, 3)
    >>> ImageReader(mode="L", image_size=16).fit_transform(paths).shape
    (3, 16, 16)
    """

    def __init__(self, *, column=None, mode="RGB", image_size=None):
        self.column = column
        self.mode = mode
        self.image_size = image_size

    def _paths(self, X, reset):
        if isinstance(X, (str, bytes, os.PathLike)):
            raise ValueError(
                "Expected a list, array, Series or DataFrame of file paths; got a single "
                f"path {X!r}. Wrap it in a list."
            )
        if hasattr(X, "columns"):
            if reset:
                self.n_features_in_ = X.shape[1]
                self.feature_names_in_ = np.asarray(X.columns, dtype=object)
            if self.column is None:
                if X.shape[1] != 1:
                    raise ValueError(
                        f"X is a DataFrame with {X.shape[1]} columns; pass column=<name> to "
                        "say which one holds the image paths."
                    )
                X = X.iloc[:, 0]
            elif self.column not in X.columns:
                raise ValueError(
                    f"column={self.column!r} is not a column of X; columns are "
                    f"{list(X.columns)}."
                )
            else:
                X = X[self.column]
        else:
            if reset:
                self.n_features_in_ = 1
                self.__dict__.pop("feature_names_in_", None)
            if self.column is not None:
                raise ValueError(
                    f"column={self.column!r} applies to DataFrame input only; got "
                    f"{type(X).__name__}."
                )
        paths = list(np.asarray(X, dtype=object).reshape(-1)) if np.ndim(X) == 2 else list(X)
        if not paths:
            raise ValueError("Found no image paths; expected at least one.")
        for index, path in enumerate(paths):
            if not isinstance(path, (str, os.PathLike)):
                raise TypeError(
                    f"Expected file paths; item {index} is {type(path).__name__} "
                    f"({path!r}). Images already in memory need no ImageReader."
                )
        return paths

    _parameter_constraints = {
        "column": [None, InstanceOf((str, numbers.Integral), "a column name (str or int)")],
        "mode": [None, Options("RGB", "L")],
        "image_size": image_size(),
    }

    def _check_params(self):
        validate_params(self)
        return as_height_width(self.image_size)

    def fit(self, X, y=None):
        """Check the paths and parameters; no file is read.

        Parameters
        ----------
        X : list, array, Series or DataFrame of str or path-like
            Image file paths.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted reader.
        """
        self._check_params()
        self._paths(X, reset=True)
        self.is_fitted_ = True
        return self

    def transform(self, X):
        """Read and decode the images.

        Parameters
        ----------
        X : list, array, Series or DataFrame of str or path-like
            Image file paths.

        Returns
        -------
        images : ndarray of shape (n, h, w, c), or (n, h, w) for grayscale
            The files' own integers (uint8, or uint16 for 16-bit files) when
            no resize is needed and they share one bit depth; otherwise
            float32 in [0, 1], scaled and resized as the neural estimators
            read the same files.
        """
        check_is_fitted(self, "is_fitted_")
        size = self._check_params()
        paths = self._paths(X, reset=False)
        # The estimators' pixel path: threads, full bit depth, EXIF orientation.
        arrays = decode_arrays(paths, size)
        n_channels = {"RGB": 3, "L": 1}.get(self.mode) or (
            3 if any(array.ndim == 3 for array in arrays) else 1)
        shapes = {array.shape[:2] for array in arrays}
        if size is None and len(shapes) > 1:
            raise ValueError(
                f"The images have {len(shapes)} different sizes (e.g. {sorted(shapes)[:3]}); "
                "pass image_size=(height, width) to resize them to one size."
            )
        dtypes = {array.dtype.name for array in arrays}
        if (size is None and len(dtypes) == 1 and dtypes <= {"uint8", "uint16"}
                and not (n_channels == 1 and any(array.ndim == 3 for array in arrays))):
            # Exact: the files' own integers, gray repeated where the set is colour.
            return np.stack([np.repeat(array[..., None], 3, axis=2)
                             if n_channels == 3 and array.ndim == 2 else array
                             for array in arrays])
        batch = to_unit_batch(arrays, n_channels, size).permute(0, 2, 3, 1)
        return np.ascontiguousarray((batch[..., 0] if n_channels == 1 else batch).numpy())

    def get_feature_names_out(self, input_features=None):
        """Pixel names of the output, known when ``image_size`` and ``mode`` are set.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Ignored.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self, "is_fitted_")
        size = self._check_params()
        if size is None or self.mode is None:
            raise ValueError(
                "ImageReader's output shape depends on the files unless image_size and mode "
                "are set; set both to get output feature names."
            )
        return pixel_feature_names((*size, {"RGB": 3, "L": 1}[self.mode]))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags


@_fill_image_doc
class Resize(_ImageTransformer):
    """Resize images to one ``(height, width)``.

    Read more in the :ref:`User Guide <user-guide-feature-selection-scaling>`.

    Parameters
    ----------
    image_size : int or (int, int), default=(224, 224)
        Output ``(height, width)``; an int gives a square.

    interpolation : {"bilinear", "bicubic", "nearest", "area"}, default="bilinear"
        Resampling filter (``torch.nn.functional.interpolate``'s modes).

    antialias : bool, default=True
        Low-pass filter when shrinking with "bilinear" or "bicubic", as
        Pillow and torchvision do; avoids aliasing.

    %(image_parameters)s

    Attributes
    ----------
    %(image_attributes)s

    See Also
    --------
    ImageReader : Reads files, optionally resizing them.
    torchvision.transforms.v2.Resize : The per-image torch transform.

    Examples
    --------
    >>> from skvision.datasets import load_digit_images
    >>> from skvision.preprocessing import Resize
    >>> X, y = load_digit_images(return_X_y=True)
    >>> Resize(image_size=16).fit_transform(X).shape
    (1797, 16, 16)
    """

    def __init__(self, *, image_size=(224, 224), interpolation="bilinear", antialias=True,
                 image_shape=None, channels="last"):
        self.image_size = image_size
        self.interpolation = interpolation
        self.antialias = antialias
        self.image_shape = image_shape
        self.channels = channels

    _parameter_constraints = {
        **_ImageTransformer._parameter_constraints,
        "image_size": image_size(allow_none=False),
        "interpolation": [Options(*_INTERPOLATIONS)],
        "antialias": [BOOLEAN],
    }

    def _size(self):
        return as_height_width(self.image_size)

    def fit(self, X, y=None):
        """Check the parameters and record the input image shape.

        Parameters
        ----------
        X : array-like of images
            Any form the estimators accept.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        self._images(X, reset=True)
        return self

    def transform(self, X):
        """Resize the images.

        Parameters
        ----------
        X : array-like of images
            Images of the shape seen in ``fit``.

        Returns
        -------
        X_resized : array or tensor
            The images at ``image_size``, in the form and dtype of ``X``.
        """
        check_is_fitted(self, "image_shape_")
        images = self._images(X, reset=False)
        size = self._size()
        resized = resize_images(images, size, self.interpolation, self.antialias)
        return images_like(resized, X, channels=self.channels)

    def _output_shape(self):
        return (*self._size(), self.image_shape_[2])


@_fill_image_doc
class Grayscale(_ImageTransformer):
    """Turn RGB images into one-channel gray images (ITU-R 601 luma).

    Gray input passes through unchanged.

    Read more in the :ref:`User Guide <user-guide-feature-selection-scaling>`.

    Parameters
    ----------
    %(image_parameters)s

    Attributes
    ----------
    %(image_attributes)s

    See Also
    --------
    skimage.color.rgb2gray : The same luma weights, one image at a time.

    Examples
    --------
    >>> import numpy as np
    >>> from skvision.preprocessing import Grayscale
    >>> rgb = np.ones((2, 4, 4, 3), dtype=np.float32)
    >>> Grayscale().fit_transform(rgb).shape
    (2, 4, 4, 1)
    """

    def __init__(self, *, image_shape=None, channels="last"):
        self.image_shape = image_shape
        self.channels = channels

    def fit(self, X, y=None):
        """Record the input image shape; RGB or gray images only.

        Parameters
        ----------
        X : array-like of images
            Any form the estimators accept.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        images = self._images(X, reset=True)
        if images.shape[1] not in (1, 3):
            raise ValueError(
                f"Grayscale expects RGB (3 channels) or gray (1 channel) images; got "
                f"{images.shape[1]} channels."
            )
        return self

    def transform(self, X):
        """Gray images, one channel.

        Parameters
        ----------
        X : array-like of images
            Images of the shape seen in ``fit``.

        Returns
        -------
        X_gray : array or tensor
            ``(n, h, w, 1)`` for channels-last input, ``(n, h, w)`` for 3-D
            input, ``(n, h*w)`` rows for flat input; dtype of ``X``.
        """
        check_is_fitted(self, "image_shape_")
        images = self._images(X, reset=False)
        if images.shape[1] == 3:
            images = torch.einsum("nchw,c->nhw", images, _LUMA.to(images.dtype))[:, None]
        return images_like(images, X, channels=self.channels)

    def _output_shape(self):
        return (*self.image_shape_[:2], 1)


@_fill_image_doc
class ChannelStandardizer(_ImageTransformer):
    """Standardize each color channel to zero mean and unit variance.

    The image form of :class:`~sklearn.preprocessing.StandardScaler`: one
    mean and one standard deviation per channel, learned over all pixels of
    the training images, so the image shape is kept (a per-pixel scaler would
    give each pixel its own scale and break the translation invariance a CNN
    relies on).

    Read more in the :ref:`User Guide <user-guide-feature-selection-scaling>`.

    Parameters
    ----------
    with_mean : bool, default=True
        Subtract the channel means.

    with_std : bool, default=True
        Divide by the channel standard deviations.

    %(image_parameters)s

    Attributes
    ----------
    mean_ : ndarray of shape (n_channels,)
        Per-channel mean of the training pixels (0 when ``with_mean=False``).

    scale_ : ndarray of shape (n_channels,)
        Per-channel standard deviation (1 for constant channels, or when
        ``with_std=False``).

    %(image_attributes)s

    See Also
    --------
    sklearn.preprocessing.StandardScaler : Per-feature scaling of tabular data.

    Examples
    --------
    >>> import numpy as np
    >>> from skvision.preprocessing import ChannelStandardizer
    >>> images = np.random.default_rng(0).random((10, 8, 8, 3))
    >>> scaled = ChannelStandardizer().fit_transform(images)
    >>> np.round(scaled.mean(axis=(0, 1, 2)), 6) + 0.0
    array([0., 0., 0.])
    """

    _parameter_constraints = {
        **_ImageTransformer._parameter_constraints,
        "with_mean": [BOOLEAN],
        "with_std": [BOOLEAN],
    }

    def __init__(self, *, with_mean=True, with_std=True, image_shape=None, channels="last"):
        self.with_mean = with_mean
        self.with_std = with_std
        self.image_shape = image_shape
        self.channels = channels

    def fit(self, X, y=None):
        """Learn the per-channel mean and standard deviation.

        Parameters
        ----------
        X : array-like of images
            Any form the estimators accept.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted standardizer.
        """
        images = self._images(X, reset=True).double()
        n_channels = images.shape[1]
        mean = images.mean(dim=(0, 2, 3)) if self.with_mean else images.new_zeros(n_channels)
        if self.with_std:
            std = images.std(dim=(0, 2, 3), correction=0)
            # Constant channels are left unscaled, as StandardScaler does.
            std = torch.where(std < 10 * torch.finfo(torch.float64).eps * mean.abs().clamp(min=1),
                              torch.ones_like(std), std)
        else:
            std = images.new_ones(n_channels)
        self.mean_, self.scale_ = mean.numpy(), std.numpy()
        return self

    def _moments(self, images):
        as_tensor = {"dtype": images.dtype}
        return (torch.as_tensor(self.mean_, **as_tensor).view(1, -1, 1, 1),
                torch.as_tensor(self.scale_, **as_tensor).view(1, -1, 1, 1))

    def transform(self, X):
        """Standardize the images.

        Parameters
        ----------
        X : array-like of images
            Images of the shape seen in ``fit``.

        Returns
        -------
        X_scaled : array or tensor
            In the form of ``X``; float (uint8 input gives float32).
        """
        check_is_fitted(self, "mean_")
        images = self._images(X, reset=False)
        mean, scale = self._moments(images)
        return images_like((images - mean) / scale, X, channels=self.channels, keep_uint8=False)

    def inverse_transform(self, X):
        """Undo the standardization.

        Parameters
        ----------
        X : array-like of images
            Standardized images, as ``transform`` returns them.

        Returns
        -------
        X_original : array or tensor
            In the form of ``X`` and the dtype of the images seen in
            ``fit`` (``input_dtype_``): ``inverse_transform(transform(X))``
            gives ``X`` back, uint8 as uint8 (rounded and clipped).
        """
        check_is_fitted(self, "mean_")
        images = self._images(X, reset=False)
        mean, scale = self._moments(images)
        return images_as(images * scale + mean, image_layout(X, self.channels),
                         self.input_dtype_)


@_fill_image_doc
class ImageFlattener(_ImageTransformer):
    """Flatten images into rows of pixel features, and back.

    Gives the 2-D ``(n_samples, height * width * channels)`` matrix sklearn's
    scalers, selectors and linear models take, with feature names
    ``px_r{row}_c{col}_ch{channel}`` (channels-last order, so pandas output
    and selectors name real pixels). ``inverse_transform`` turns rows —
    or a selector's support mask — back into images.

    Read more in the :ref:`User Guide <user-guide-feature-selection-scaling>`.

    Parameters
    ----------
    %(image_parameters)s

    Attributes
    ----------
    %(image_attributes)s

    See Also
    --------
    skvision.plotting.plot_feature_mask : Shows the pixels a selector kept.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skvision.datasets import load_digit_images
    >>> from skvision.preprocessing import ImageFlattener
    >>> X, y = load_digit_images(return_X_y=True)
    >>> flat = ImageFlattener().set_output(transform="pandas").fit_transform(X)
    >>> flat.shape, flat.columns[9]
    ((1797, 64), 'px_r1_c1_ch0')
    >>> ImageFlattener().fit(X).inverse_transform(flat.to_numpy()).shape
    (1797, 8, 8)
    """

    def __init__(self, *, image_shape=None, channels="last"):
        self.image_shape = image_shape
        self.channels = channels

    def fit(self, X, y=None):
        """Record the image shape.

        Parameters
        ----------
        X : array-like of images
            Any form the estimators accept.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted flattener.
        """
        self._images(X, reset=True)
        return self

    def transform(self, X):
        """Flatten the images into rows.

        Parameters
        ----------
        X : array-like of images
            Images of the shape seen in ``fit``.

        Returns
        -------
        X_flat : ndarray of shape (n_samples, height * width * channels)
            float (uint8 input gives float32 in [0, 1]).
        """
        check_is_fitted(self, "image_shape_")
        images = self._images(X, reset=False)
        return images_like(images, X, channels=self.channels, keep_uint8=False, flat=True)

    def inverse_transform(self, X):
        """Turn rows back into images.

        Parameters
        ----------
        X : array-like of shape (n_samples, height * width * channels)
            Rows as ``transform`` gives them (or a boolean support mask).

        Returns
        -------
        images : ndarray or tensor
            The images in the layout and dtype seen in ``fit``
            (``input_layout_``, ``input_dtype_``):
            ``inverse_transform(transform(X))`` gives ``X`` back, uint8 as
            uint8 (rounded and clipped). A support mask stays boolean.
        """
        check_is_fitted(self, "image_shape_")
        # A copy: the images returned never share memory with the rows given.
        X = check_array(X, dtype=None, input_name="X", copy=True)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but ImageFlattener is expecting "
                f"{self.n_features_in_} features (images of shape {self.image_shape_})."
            )
        images = X.reshape(len(X), *self.image_shape_).transpose(0, 3, 1, 2)
        return images_as(images, self.input_layout_,
                         bool if X.dtype == bool else self.input_dtype_)
