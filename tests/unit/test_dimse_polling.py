"""pynetdicom's polling sleeps (portal/network/__init__.py): short while an association is busy, 1 ms when idle."""

import threading
import time

import pynetdicom.association
from pynetdicom import AE
from pynetdicom.association import Association

from portal import network


def test_the_dul_polls_fast_only_while_pdus_arrive():
    dul = Association(AE(), "requestor").dul
    assert dul._run_loop_delay == 0.001  # nothing received yet: pynetdicom's own delay
    dul._idle_timer.start()  # what the DUL does at every PDU it receives
    assert dul._run_loop_delay == network.FAST_SLEEP_S
    dul._idle_timer._start_time = time.time() - network.BUSY_S - 0.01
    assert dul._run_loop_delay == 0.001
    dul._run_loop_delay = 0.005  # pynetdicom's setting still applies when idle
    assert dul._run_loop_delay == 0.005


def test_the_association_reactor_sleeps_short_only_in_a_busy_association_thread():
    clock = pynetdicom.association.time
    assert clock.time() >= time.time() - 1 and clock.monotonic() > 0  # the rest is the time module's

    slept = []
    real = time.sleep
    try:
        time.sleep = slept.append  # what the clock asks for; it calls time.sleep of the time module
        clock.sleep(0.001)  # not an association's thread
        assoc = Association(AE(), "requestor")
        assoc.dul._idle_timer.start()
        assoc.run = lambda: clock.sleep(0.001)  # this association's thread, busy
        assoc.start()
        assoc.join()
        idle = Association(AE(), "requestor")
        idle.run = lambda: clock.sleep(0.001)  # its DUL has received nothing
        idle.start()
        idle.join()
        clock.sleep(0.25)  # other sleeps are left alone
    finally:
        time.sleep = real
    assert slept == [0.001, network.FAST_SLEEP_S, 0.001, 0.25]
    assert not isinstance(threading.current_thread(), Association)
