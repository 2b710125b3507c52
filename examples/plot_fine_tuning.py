"""
Fine-tuning a pretrained network
================================

:class:`~skvision.transfer.FineTunedClassifier` replaces the classifier of a
pretrained backbone with a new head for the task's classes. With
``freeze="all"`` only the head is trained; with ``freeze=n`` the last ``n``
stages adapt too, at a lower learning rate (``backbone_lr``) so the
pretrained weights change only a little. Frozen stages keep their batch
normalization statistics. Here both are trained on synthetic shapes and
compared on held-out images, with their training curves.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.model_selection import train_test_split

from skvision.datasets import make_shapes
from skvision.plotting import plot_history
from skvision.transfer import FineTunedClassifier

X, y = make_shapes(300, image_size=32, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)

for freeze in ["all", 2]:
    clf = FineTunedClassifier(freeze=freeze, image_size=96, epochs=6, lr=0.003,
                              early_stopping=True, n_iter_no_change=6, random_state=0)
    clf.fit(X_train, y_train)
    print(f"freeze={freeze!r}: held-out accuracy {clf.score(X_test, y_test):.3f}")
    fig = plot_history(clf)
    fig.suptitle(f"freeze={freeze!r}")
plt.show()
