// Emitter: the on/off/once/emit of Node's EventEmitter, for code that runs in
// browsers too. A listener that throws does not stop the others, nor the
// caller (the client's frame handling): the error goes to `onListenerError`.

export class Emitter {
  #listeners = new Map(); // event name -> array of listeners, in the order added

  on(event, listener) {
    if (typeof listener !== 'function') throw new TypeError('a listener is a function');
    const list = this.#listeners.get(event);
    if (list) list.push(listener);
    else this.#listeners.set(event, [listener]);
    return this;
  }

  off(event, listener) {
    const list = this.#listeners.get(event);
    if (!list) return this;
    // The last one added goes first, as in Node; a once() listener is found
    // by the function given to once().
    const i = list.findLastIndex((l) => l === listener || l.listener === listener);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#listeners.delete(event);
    return this;
  }

  once(event, listener) {
    if (typeof listener !== 'function') throw new TypeError('a listener is a function');
    const wrapper = (...args) => {
      this.off(event, wrapper);
      listener(...args);
    };
    wrapper.listener = listener; // so that off(event, listener) removes it before it fires
    return this.on(event, wrapper);
  }

  listenerCount(event) {
    return this.#listeners.get(event)?.length ?? 0;
  }

  /** Calls every listener of `event`; returns whether there was one. */
  emit(event, ...args) {
    const list = this.#listeners.get(event);
    if (!list) return false;
    for (const listener of [...list]) {
      try {
        listener(...args);
      } catch (error) {
        this.onListenerError(error, event);
      }
    }
    return true;
  }

  /** Where a listener's exception goes; subclasses decide. */
  onListenerError(error) {
    // Unhandled, like an exception in any other callback: it surfaces on a
    // later turn of the event loop, after the caller has finished its work.
    setTimeout(() => {
      throw error;
    });
  }
}
