"""Docstring text shared by many estimators, and the helpers that fill it in.

Shared text (training parameters, fitted attributes, image parameters) is
written once and inserted where each estimator documents it, so the API
pages never drift apart; defaults are read from each class's signature, so
the text cannot state another default than the code has.
"""

import inspect
import re

from ._params import RESERVED_CALLBACK_NAMES

TRAINING_PARAMETERS_DOC = """\
image_shape : tuple of int, default=None
        ``(height, width)`` or ``(height, width, channels)`` of flat 2-D
        input rows (one side may be -1 to infer it). When None, a square
        grayscale or RGB image is inferred. Ignored for 3-D/4-D input.

    channels : {"last", "first"}, default="last"
        Channel axis of 4-D numpy input: ``(n, h, w, c)`` or ``(n, c, h, w)``.
        Torch tensors are always taken as channels-first.
%(image_size_doc)s
    on_error : {"raise", "skip"}, default="raise"
        What ``fit`` does with an image file that cannot be read (missing,
        truncated, not an image), found by a header check before training
        starts: raise an error naming it, or leave it (and its target) out
        with one warning listing them. Prediction always raises.

    epochs : int or "auto", default="auto"
        Number of passes over the training data. "auto" passes over about
        %(epoch_budget)s images in all:
        ``min(%(max_epochs)s, ceil(%(epoch_budget_int)s / n_images))`` epochs, so
        %(max_epochs)s on up to %(full_epochs_below)s training images and one from
        %(epoch_budget)s up: large sets do not pay for the passes small ones
        need. ``history_`` has one row per epoch.

    batch_size : int, default=%(batch_size)s
        Images per gradient step (and per inference batch).

    lr : float, default=%(lr)s
        Learning rate (the peak rate with ``lr_schedule="onecycle"``).

    optimizer : {"adamw", "sgd"}, default="adamw"
        AdamW, or SGD with Nesterov momentum 0.9. Neither decays the
        weights on its own (AdamW's ``weight_decay`` is 0): ``alpha`` is the
        only penalty.

    lr_schedule : {"onecycle", "cosine"} or None, default="onecycle"
        Learning-rate schedule over all batches of a ``fit`` call: one-cycle
        warm-up and annealing, cosine annealing, or a constant rate.

    alpha : float, default=%(alpha)s
        Strength of the penalty added to the loss on the weights of the
        convolution and fully-connected layers (not biases or norms), as in
        :class:`~sklearn.linear_model.SGDClassifier`:
        ``alpha * (l1_ratio * ||w||_1 + (1 - l1_ratio) / 2 * ||w||_2^2)``.
        It is the only penalty: ``alpha=0`` trains without any.

    l1_ratio : float, default=0.0
        Elastic-net mix of the penalty: 0 is L2 (ridge), 1 is L1 (lasso).

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data, stop when the
        validation loss has not improved for ``n_iter_no_change`` epochs and
        restore the best weights. Off by default so that cross-validation
        trains on all of each training fold.

    validation_fraction : float, default=0.1
        Share of the training data held out (stratified for classifiers) when
        ``early_stopping=True``.

    n_iter_no_change : int, default=5
        Epochs without improvement of the validation loss before stopping.

    augment : ImageAugmenter or callable, default=None
        Applied to every training batch on the training device, with new
        random draws at every epoch (seeded by ``random_state``); never to
        validation or prediction batches. An
        :class:`~skvision.augmentation.ImageAugmenter` draws parameters per
        image and can mix labels (mixup, cutmix); any other callable taking
        and returning a float tensor ``(n, c, h, w)`` also works, e.g.
        ``torchvision.transforms.v2.RandomHorizontalFlip()``, for estimators
        whose targets do not move with the image (the segmenter and the
        detector take an ImageAugmenter only: it moves masks and boxes).

    warm_start : bool, default=False
        When True, ``fit`` on a fitted estimator continues training from its
        current weights instead of starting anew.

    device : {"auto", "cpu", "cuda", "mps"}, default="auto"
        Where to train and predict; "auto" picks CUDA, then MPS, then CPU.

    precision : {"auto", "32", "bf16", "16-mixed"}, default="%(precision)s"
        Arithmetic of training and prediction. "auto" is "bf16" on CPUs with
        native bfloat16 instructions (AVX512-BF16 or AMX) and "32" elsewhere
        (GPUs included). "bf16" and "16-mixed" run
        convolutions and matrix products in bfloat16 or float16 under
        ``torch.autocast`` (weights and losses stay float32); "16-mixed"
        also scales the loss with a ``torch.amp.GradScaler`` so that small
        float16 gradients do not vanish. Faster on GPUs with tensor cores;
        on CPUs "bf16" helps where they have bfloat16 instructions (1.7x for
        a CNN, measured) and "16-mixed" is several times slower. The
        environment variable ``SKVISION_BF16=0`` or ``1`` overrides the CPU
        check of "auto". The precision a network trained in is kept
        (``precision_``) and used for its predictions, also after
        ``skvision.load`` or unpickling, except that a model trained in
        "bf16" and restored on a CPU without bfloat16 instructions runs in
        float32 there (with a warning), as its ONNX export does.%(accelerator_doc)s

    callbacks : list of skorch callbacks or (name, callback) pairs, default=None
        Added to skvision's own for every fit: e.g. skorch's
        ``GradientNormClipping``, ``TensorBoard``, ``EpochScoring`` or a
        ``Checkpoint``. Each epoch they run after the losses are recorded
        and the learning-rate schedule has stepped, before early stopping
        and the progress bar, so they see every epoch, the last one too. A
        callback given bare is named after its class; names must differ
        from skvision's and skorch's own (%(reserved_callbacks)s).
        They act on the skorch net (``net_``); ``history_`` shows the
        columns they record.

    checkpoint : str or path-like, default=None
        A directory where ``fit`` keeps its whole training state, replaced
        atomically at the end of every epoch: weights, optimizer, schedule,
        random generators, history and early stopping's state (safetensors
        and JSON, no pickle). ``fit`` called again with the same directory,
        parameters and data, e.g. after the process was killed, continues
        from the last finished epoch to the model an uninterrupted fit
        gives, and removes the checkpoint when training ends. Each fit has
        its own file, named by a hash of its parameters and data: the
        candidates and folds of a search (which share the directory) each
        resume their own, and a fit with other parameters or data starts
        afresh beside them. With an ``accelerator``, process 0 writes and
        every process reads. ``partial_fit`` ignores it; so does the state
        of your own ``callbacks``.

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialization, dropout, shuffling and the validation
        split: the same seed gives the same model on the same device.

    verbose : int, default=0
        0 is silent, 1 shows one progress bar per fit, 2 prints a table of
        the losses at every epoch."""

FITTED_ATTRIBUTES_DOC = """\
net_ : skorch.NeuralNet
        The skorch net that trained the module.

    module_ : torch.nn.Module
        The trained network (``net_.module_``).

    history_ : pandas.DataFrame
        One row per epoch: ``epoch``, ``train_loss``, ``valid_loss``
        (with early stopping), accuracies for classifiers, ``lr`` and
        ``dur`` (seconds).

    n_features_in_ : int
        Pixels per image times channels (the flat size); for image files,
        that of the decoded images.

    image_shape_ : tuple of int
        ``(height, width, channels)`` of the training images.

    input_kind_ : str
        What ``fit`` was given, as far as the pixels' scale goes: "uint8",
        "uint16", "files", "float in [0, 1]", "float" or "integer". Input of
        another scale at prediction (e.g. float 0-255 after fitting on uint8)
        warns.

    precision_ : {"32", "bf16", "16-mixed"}
        The arithmetic the network trained in (``precision`` with "auto"
        resolved), used by every prediction.

    feature_names_in_ : ndarray of str
        Column names, when fitted on a DataFrame with string column names."""


IMAGE_SIZE_DOC = """
    image_size : int or (int, int), default=None
        ``(height, width)`` the network sees: image files are decoded at this
        size and in-memory images are resized to it batch by batch (bilinear
        with antialiasing), and prediction then takes images of any size.
        None: the training images' own size (image files must then all have
        one size).
"""

ACCELERATOR_DOC = """

    accelerator : accelerate.Accelerator, default=None
        Train through Hugging Face accelerate (skorch's ``AccelerateMixin``),
        e.g. data-parallel on several GPUs, CPU processes or machines started
        with ``torchrun`` or ``accelerate launch``: each process trains on its
        share of every epoch's shuffled images (``batch_size`` is per
        process), the gradients are averaged and every process ends with the
        same model. The accelerator places the network and sets mixed
        precision (its ``mixed_precision``; ``precision`` must then be "32"
        or "auto", and either trains as "32" under the accelerator's own
        setting: ``precision_`` is "32"). ``device`` is ignored."""


CLASS_WEIGHT_DOC = """\
class_weight : dict, "balanced" or None, default=None
        Weight of each class in the loss, as in sklearn: a dict
        ``{label: weight}`` (unlisted classes weigh 1), or "balanced" for
        ``n_samples / (n_classes * count of the class)`` in the data of each
        ``fit``, so rare classes count as much as common ones. Multiplied
        with ``sample_weight``; ``class_weight_`` holds the weights used."""


def fill_docstring(**fields):
    """Class or function decorator: fill ``%(name)s`` fields of its docstring."""

    def decorate(obj):
        obj.__doc__ = obj.__doc__ % fields
        return obj

    return decorate


def signature_defaults(cls):
    """``{parameter: default}`` of the keyword parameters of ``cls.__init__``."""
    return {name: parameter.default
            for name, parameter in inspect.signature(cls.__init__).parameters.items()
            if parameter.default is not inspect.Parameter.empty}


def _parameter_blocks(text):
    """``{name: text}`` of each parameter of a numpydoc Parameters text, in order."""
    blocks = re.split(r"\n\n    (?=\w+ : )", text.strip())
    return {block.split(" :", 1)[0].strip(): block for block in blocks}


def fill_doc(architecture="", resize=True):
    """Class decorator: fill the ``%(training_parameters)s``, ``%(fitted_attributes)s``,
    ``%(class_weight)s`` and ``%(architecture)s`` fields of a neural estimator's docstring.

    The shared parameters are documented when the class's signature has
    them (the detector has no ``accelerator`` or early stopping), with the
    defaults that differ between estimators (``batch_size``, ``lr``,
    ``alpha``, ``precision``) read from that signature and the
    ``epochs="auto"`` rule from the class's ``_auto_epochs``.
    ``resize=False`` leaves out the ``image_size`` parameter (for an
    estimator that documents its own).
    """

    def decorate(cls):
        defaults = signature_defaults(cls)
        max_epochs, budget = cls._auto_epochs
        fields = {
            "batch_size": defaults["batch_size"], "lr": defaults["lr"],
            "alpha": defaults["alpha"], "precision": defaults["precision"],
            "accelerator_doc": ACCELERATOR_DOC, "image_size_doc": IMAGE_SIZE_DOC,
            "reserved_callbacks": ", ".join(f'"{name}"' for name in RESERVED_CALLBACK_NAMES),
            "max_epochs": max_epochs, "epoch_budget": f"{budget:,}",
            "epoch_budget_int": budget, "full_epochs_below": f"{budget // max_epochs:,}",
        }
        documented = set(defaults) - (set() if resize else {"image_size"})
        blocks = _parameter_blocks(TRAINING_PARAMETERS_DOC % fields)
        parameters = "\n\n    ".join(block for name, block in blocks.items() if name in documented)
        return fill_docstring(
            architecture=architecture,
            training_parameters=parameters,
            fitted_attributes=FITTED_ATTRIBUTES_DOC,
            class_weight=CLASS_WEIGHT_DOC,
        )(cls)

    return decorate
