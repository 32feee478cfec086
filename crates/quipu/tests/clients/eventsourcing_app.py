"""An application built on the Python `eventsourcing` library, persisted
through its KurrentDB module (`eventsourcing-kurrentdb`), against Quipu's
KurrentDB door.

Usage: eventsourcing_app.py HOST:PORT

It saves and reloads aggregates, sees a concurrent save refused, reads its
notification log, and follows it with a subscription. Exits non-zero,
naming what went wrong, when anything differs.
"""

import os
import sys

os.environ["PERSISTENCE_MODULE"] = "eventsourcing_kurrentdb"
os.environ["KURRENTDB_URI"] = f"kurrentdb://{sys.argv[1]}?Tls=false"

from eventsourcing.application import Application  # noqa: E402
from eventsourcing.domain import Aggregate, event  # noqa: E402
from eventsourcing.persistence import IntegrityError  # noqa: E402
from verdict import check


class Dog(Aggregate):
    INITIAL_VERSION = 0  # KurrentDB streams start at revision 0, as the package asks

    @event("Registered")
    def __init__(self, name):
        self.name = name
        self.tricks = []

    @event("TrickAdded")
    def add_trick(self, trick):
        self.tricks.append(trick)


class DogSchool(Application):
    def register_dog(self, name):
        dog = Dog(name)
        self.save(dog)
        return dog.id

    def add_trick(self, dog_id, trick):
        dog = self.repository.get(dog_id)
        dog.add_trick(trick)
        self.save(dog)

    def get_dog(self, dog_id):
        dog = self.repository.get(dog_id)
        return {"name": dog.name, "tricks": tuple(dog.tricks), "version": dog.version}


school = DogSchool()
fido = school.register_dog("Fido")
school.add_trick(fido, "roll over")
school.add_trick(fido, "play dead")
rex = school.register_dog("Rex")
school.add_trick(rex, "fetch")

check(school.get_dog(fido) == {"name": "Fido", "tricks": ("roll over", "play dead"), "version": 2}, "Fido reloads")
check(school.get_dog(rex) == {"name": "Rex", "tricks": ("fetch",), "version": 1}, "Rex reloads")

# Two copies of one aggregate: the second save is refused.
first, second = school.repository.get(rex), school.repository.get(rex)
first.add_trick("sit")
school.save(first)
second.add_trick("stay")
try:
    school.save(second)
    check(False, "a concurrent save was accepted")
except IntegrityError:
    pass
check(school.get_dog(rex)["tricks"] == ("fetch", "sit"), "the refused save wrote nothing")

# The notification log: every event of the application, in order.
notifications = school.notification_log.select(start=1, limit=10)
topics = [n.topic.split(":")[-1] for n in notifications]
check(
    topics == ["Dog.Registered", "Dog.TrickAdded", "Dog.TrickAdded", "Dog.Registered", "Dog.TrickAdded", "Dog.TrickAdded"],
    f"notification topics {topics}",
)
ids = [n.id for n in notifications]
check(ids == sorted(ids) and len(set(ids)) == len(ids), f"notification ids rise: {ids}")
later = school.notification_log.select(start=ids[2], limit=10)
check([n.id for n in later] == ids[2:], f"the log from its third notification: {[n.id for n in later]}")
check(school.recorder.max_notification_id() == ids[-1], "the last notification id")

# A subscription follows the log after a notification, then live.
with school.recorder.subscribe(gt=ids[3]) as subscription:
    received = [next(subscription).id for _ in range(2)]
    check(received == ids[4:6], f"subscription after {ids[3]}: {received}")
    school.add_trick(fido, "jump")
    live = next(subscription)
    check(str(live.originator_id) == str(fido) and live.id == ids[-1] + 1, f"a live notification: {live}")
print("ok")
