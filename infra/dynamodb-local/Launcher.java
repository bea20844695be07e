// Starts AWS's DynamoDB Local bound to 127.0.0.1 only. The stock jar listens on every interface and has no
// host option, so we build the server through its own factory, point its Jetty connectors at loopback, start it.
// Run with the source launcher (`java Launcher.java ...`): no javac step. Arguments are DynamoDB Local's own.
import java.lang.reflect.Field;
import java.lang.reflect.Method;

public class Launcher {
    public static void main(String[] args) throws Exception {
        Class<?> runner = Class.forName("software.amazon.dynamodb.services.local.main.ServerRunner");
        Object proxy = runner.getMethod("createServerFromCommandLineArgs", String[].class).invoke(null, (Object) args);
        Field serverField = findField(proxy.getClass(), "server");
        serverField.setAccessible(true);
        Object jetty = serverField.get(proxy);
        Object[] connectors = (Object[]) jetty.getClass().getMethod("getConnectors").invoke(jetty);
        int bound = 0;
        for (Object connector : connectors) {
            Method setHost = findMethod(connector.getClass(), "setHost", String.class);
            if (setHost != null) {
                setHost.invoke(connector, "127.0.0.1");
                bound++;
            }
        }
        if (bound == 0) {
            throw new IllegalStateException("no Jetty connector to bind to 127.0.0.1; refusing to listen on all interfaces");
        }
        proxy.getClass().getMethod("start").invoke(proxy);
        System.out.println("DynamoDB Local listening on 127.0.0.1");
        proxy.getClass().getMethod("join").invoke(proxy);
    }

    private static Field findField(Class<?> type, String name) throws NoSuchFieldException {
        for (Class<?> c = type; c != null; c = c.getSuperclass()) {
            try {
                return c.getDeclaredField(name);
            } catch (NoSuchFieldException ignored) {
                // keep looking in the superclass
            }
        }
        throw new NoSuchFieldException(name);
    }

    private static Method findMethod(Class<?> type, String name, Class<?>... params) {
        for (Class<?> c = type; c != null; c = c.getSuperclass()) {
            try {
                return c.getMethod(name, params);
            } catch (NoSuchMethodException ignored) {
                // keep looking
            }
        }
        return null;
    }
}
